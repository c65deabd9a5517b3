using System.Numerics;
using System.Runtime.CompilerServices;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// TIES's trim, elect and disjoint merge of one tensor in a single pass over the N task tensors,
/// vectorised and split over the cores, computing exactly what the tensor formulation computes:
/// <code>
/// kept_t   = τt.masked_fill(|τt| &lt; thr_t, 0)        (zeros when the task keeps nothing)
/// sum      = kept_0 + kept_1 + … (in task order)
/// elected  = sign(sum), 0 → majority = (Σ elected ≥ 0 ? +1 : −1)
/// agrees_t = sign(kept_t) == elected
/// total    = 0 + kept_0·agrees_0 + kept_1·agrees_1 + … (in task order); count = Σ agrees_t
/// merged   = (mean ? total / max(count, 1) : total) · (float)λ
/// </code>
/// Every step is the same float32 operation in the same order, so the results are bit for bit
/// those of the tensor code (NaN and ±∞ included).
/// </summary>
internal static unsafe class TiesKernel
{
    /// <summary>
    /// Writes the merge of the batch's τt (all the size of <paramref name="output"/>) into the
    /// contiguous float32 <paramref name="output"/>. A null threshold keeps nothing of that task.
    /// </summary>
    public static void Merge(TaskBatch batch, IReadOnlyList<float?> thresholds, bool mean, float lambda, torch.Tensor output)
    {
        if (batch.Length != output.numel())
        {
            throw new ArgumentException("Every task tensor must have the output's size.", nameof(batch));
        }

        Merge(batch, thresholds, mean, lambda, FloatKernels.Pointer(output));
    }

    /// <summary>The same into <c>batch.Length</c> float32 entries at <paramref name="output"/>, on every core.</summary>
    public static void Merge(TaskBatch batch, IReadOnlyList<float?> thresholds, bool mean, float lambda, float* output)
    {
        var (inputs, limits) = Inputs(batch, thresholds);
        long length = batch.Length;
        var baseValues = (IntPtr)batch.BasePointer;
        var result = (IntPtr)output;
        int pieces = (int)Math.Clamp(length * Math.Max(1, batch.Count) / FloatKernels.MinParallelElements, 1, Environment.ProcessorCount);
        var end = new TensorEnd();
        FloatKernels.ForRanges(length, pieces, (_, start, stop) =>
        {
            List<(long, float)>? alternatives = null;
            long balance = Range(inputs, (float*)baseValues, limits, start, stop, mean, lambda, (float*)result, ref alternatives);
            end.Add(balance, alternatives);
        });
        foreach (var (i, value) in end.Patches)
        {
            output[i] = value;
        }
    }

    /// <summary>
    /// θ0 + the merge of a chunk of a tensor, on the calling thread: entries [0, chunk.Length) of
    /// <paramref name="merged"/> get θ0 + delta, added as <see cref="TaskBatchKernel.MergeChunk"/>
    /// adds them; the chunk's vote for the tensor's majority sign and the values its undecided
    /// entries take if that sign is − go to <paramref name="end"/>, at positions offset by <paramref name="start"/>.
    /// </summary>
    public static void MergeChunk(TaskBatch chunk, IReadOnlyList<float?> thresholds, bool mean, float lambda, long start, float* theta0, float* merged, TensorEnd end)
    {
        var (inputs, limits) = Inputs(chunk, thresholds);
        List<(long Position, float Value)>? alternatives = null;
        long balance = Range(inputs, chunk.BasePointer, limits, 0, chunk.Length, mean, lambda, merged, ref alternatives);
        TaskBatchKernel.AddBase(theta0, merged, 0, chunk.Length);
        if (alternatives is not null)
        {
            for (int k = 0; k < alternatives.Count; k++)
            {
                var (i, delta) = alternatives[k];
                alternatives[k] = (start + i, theta0[i] + delta);
            }
        }

        end.Add(balance, alternatives);
    }

    /// <summary>The tasks' memory (zero for a task that keeps nothing) and thresholds.</summary>
    private static (IntPtr[] Inputs, float[] Limits) Inputs(TaskBatch batch, IReadOnlyList<float?> thresholds)
    {
        int n = batch.Count;
        if (thresholds.Count != n)
        {
            throw new ArgumentException("Every task needs a threshold.", nameof(thresholds));
        }

        var inputs = new IntPtr[n];
        var limits = new float[n];
        for (int t = 0; t < n; t++)
        {
            if (thresholds[t] is float threshold)
            {
                inputs[t] = (IntPtr)batch.Pointer(t);
                limits[t] = threshold;
            }
        }

        return (inputs, limits);
    }

    /// <summary>
    /// Merges [start, end) with the majority sign +; returns #(sum &gt; 0) − #(sum &lt; 0) and lists
    /// the entries that need the majority sign with the value they take if it is −.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static long Range(IntPtr[] inputs, float* baseValues, float[] limits, long start, long end, bool mean, float lambda, float* output, ref List<(long Position, float Value)>? alternatives)
    {
        int n = inputs.Length;
        int width = Vector<float>.Count;
        var zero = Vector<float>.Zero;
        var one = Vector<float>.One;
        var scale = new Vector<float>(lambda);
        var thresholds = new Vector<float>[n];
        for (int t = 0; t < n; t++)
        {
            thresholds[t] = new Vector<float>(limits[t]);
        }

        long balance = 0;
        long i = start;
        if (Vector.IsHardwareAccelerated)
        {
            // Each task's kept values, formed once and reused by the agreement pass from L1.
            var kept = stackalloc Vector<float>[n];
            const long block = 1L << 20; // keeps the per-lane sign counts within int
            while (i + width <= end)
            {
                long blockEnd = Math.Min(end, i + block);
                var signs = Vector<int>.Zero;
                for (; i + width <= blockEnd; i += width)
                {
                    // τt = θt − θ0 when there is a base (x − (+0) = x exactly otherwise).
                    var b = baseValues is null ? zero : Unsafe.ReadUnaligned<Vector<float>>(baseValues + i);
                    var sum = kept[0] = Kept(inputs, thresholds, 0, i, b);
                    var nonZero = ~Vector.Equals(sum, zero);
                    for (int t = 1; t < n; t++)
                    {
                        var k = kept[t] = Kept(inputs, thresholds, t, i, b);
                        sum += k;
                        nonZero |= ~Vector.Equals(k, zero);
                    }

                    var positive = Vector.GreaterThan(sum, zero);
                    var negative = Vector.LessThan(sum, zero);
                    signs = signs - positive + negative;

                    // Elected sign: − where the sum is negative, + elsewhere (provisionally where it is 0).
                    var total = zero;
                    var count = zero;
                    for (int t = 0; t < n; t++)
                    {
                        var k = kept[t];
                        var agrees = Vector.ConditionalSelect(negative, Vector.LessThan(k, zero), Vector.GreaterThan(k, zero));
                        total += Vector.ConditionalSelect(agrees, k, k * zero);
                        count += Vector.ConditionalSelect(agrees, one, zero);
                    }

                    var merged = mean ? total / Vector.Max(count, one) : total;
                    Unsafe.WriteUnaligned(output + i, merged * scale);

                    var undecided = ~(positive | negative) & nonZero;
                    if (undecided != Vector<int>.Zero)
                    {
                        for (int j = 0; j < width; j++)
                        {
                            if (undecided[j] != 0)
                            {
                                (alternatives ??= []).Add((i + j, Element(inputs, baseValues, limits, i + j, mean, lambda, majority: -1, out _, out _)));
                            }
                        }
                    }
                }

                balance += Vector.Sum(signs);
            }
        }

        for (; i < end; i++)
        {
            output[i] = Element(inputs, baseValues, limits, i, mean, lambda, majority: 1, out int sign, out bool undecided);
            balance += sign;
            if (undecided)
            {
                (alternatives ??= []).Add((i, Element(inputs, baseValues, limits, i, mean, lambda, majority: -1, out _, out _)));
            }
        }

        return balance;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<float> Kept(IntPtr[] inputs, Vector<float>[] thresholds, int t, long i, Vector<float> baseValue)
    {
        if (inputs[t] == IntPtr.Zero)
        {
            return Vector<float>.Zero;
        }

        var x = Unsafe.ReadUnaligned<Vector<float>>((float*)inputs[t] + i) - baseValue;
        return Vector.ConditionalSelect(Vector.LessThan(Vector.Abs(x), thresholds[t]), Vector<float>.Zero, x);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Kept(IntPtr[] inputs, float baseValue, float[] limits, int t, long i)
    {
        if (inputs[t] == IntPtr.Zero)
        {
            return 0f;
        }

        float x = ((float*)inputs[t])[i] - baseValue;
        return MathF.Abs(x) < limits[t] ? 0f : x;
    }

    /// <summary>One entry; a zero sum takes <paramref name="majority"/> (and is undecided if a kept value is non-zero).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Element(IntPtr[] inputs, float* baseValues, float[] limits, long i, bool mean, float lambda, int majority, out int sign, out bool undecided)
    {
        int n = inputs.Length;
        float b = baseValues is null ? 0f : baseValues[i];
        float sum = Kept(inputs, b, limits, 0, i);
        bool nonZero = sum != 0f;
        for (int t = 1; t < n; t++)
        {
            float k = Kept(inputs, b, limits, t, i);
            sum += k;
            nonZero |= k != 0f;
        }

        sign = sum > 0f ? 1 : sum < 0f ? -1 : 0;
        undecided = sign == 0 && nonZero;
        int elected = sign != 0 ? sign : majority;
        float total = 0f;
        float count = 0f;
        for (int t = 0; t < n; t++)
        {
            float k = Kept(inputs, b, limits, t, i);
            bool agrees = elected > 0 ? k > 0f : k < 0f;
            total += agrees ? k : k * 0f;
            count += agrees ? 1f : 0f;
        }

        float merged = mean ? total / MathF.Max(count, 1f) : total;
        return merged * lambda;
    }
}
