using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Microsoft.ML.TaskVectors.TaskVectors;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// DARE's drop-and-rescale as an <see cref="ITaskVectorSet"/> decorator: each entry of a task tensor
/// is dropped with probability p and survivors are rescaled by 1/(1−p). The mask of a
/// (task, tensor) pair is a function of (seed, task index, FNV-1a hash of the tensor name) and the
/// entry's index only, so reading the same pair again returns identical values, in any order, in
/// any process and on any number of cores.
/// </summary>
/// <remarks>
/// The random stream of a (task, tensor) pair is SplitMix64 seeded with
/// key = <see cref="StableHash.Seed"/>(seed, tensor name, task): entry i (in row-major order) draws
/// r_i = <see cref="StableHash.Mix"/>(key + i·0x9E3779B97F4A7C15) — the i-th output of that
/// generator — and is dropped when r_i &lt; p·2⁶⁴, i.e. when the uniform u_i = r_i / 2⁶⁴ is below p
/// (exactly probability p for any p that is a multiple of 2⁻⁶⁴, which every p ≥ 2⁻¹¹ is). Survivors
/// are multiplied by the float32 value of 1/(1−p); dropped entries become +0. Each draw is
/// independent of the others, so the tensor is processed in parallel without changing the result.
/// </remarks>
internal sealed class DropAndRescaleTaskVectorSet : ITaskVectorSet
{
    /// <summary>SplitMix64's increment, the golden-ratio constant 2⁶⁴/φ.</summary>
    internal const ulong Gamma = 0x9E3779B97F4A7C15UL;

    private readonly ITaskVectorSet _inner;

    public DropAndRescaleTaskVectorSet(ITaskVectorSet inner, double p, long seed)
    {
        _inner = inner ?? throw new ArgumentNullException(nameof(inner));
        P = p;
        Seed = seed;
    }

    /// <summary>The wrapped (undropped) task vectors.</summary>
    public ITaskVectorSet Inner => _inner;

    public double P { get; }

    public long Seed { get; }

    public int Count => _inner.Count;

    public IReadOnlyList<string> TaskNames => _inner.TaskNames;

    public IReadOnlyList<string> TensorNames => _inner.TensorNames;

    public long[] GetShape(string tensorName) => _inner.GetShape(tensorName);

    public torch.Tensor Get(int task, string tensorName)
    {
        using var scope = torch.NewDisposeScope();
        var tau = FloatKernels.AsContiguousFloat32(_inner.Get(task, tensorName));
        DropAndRescale(tau, StableHash.Seed(Seed, tensorName, task), P);
        return tau.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Every task's dropped-and-rescaled tensor, reading the inner set as cheaply as it allows (a
    /// pool over one base: the base once, with θt − θ0 computed within the drop pass).
    /// </summary>
    internal TaskTensorBatch ReadBatch(string tensorName)
    {
        var inner = TaskTensors.Read(_inner, tensorName);
        if (P == 0)
        {
            return inner;
        }

        Drop(inner, tensorName, P, Seed);
        return new TaskTensorBatch(inner.Tensors);
    }

    /// <summary>
    /// Drops and rescales every task of <paramref name="batch"/> in place, τt = θt − θ0 formed in
    /// the same pass when it has a base, and returns the batch of dropped τt (the batch itself when p = 0).
    /// The batch holds the tensor's entries from <paramref name="first"/> on (a range of it, for samples).
    /// </summary>
    internal static unsafe TaskBatch Drop(TaskBatch batch, string tensorName, double p, long seed, long first = 0)
    {
        if (p == 0)
        {
            return batch;
        }

        for (int t = 0; t < batch.Count; t++)
        {
            DropAndRescale(batch.Pointer(t), batch.BasePointer, batch.Length, StableHash.Seed(seed, tensorName, t), p, first);
        }

        return batch.WithoutBase();
    }

    /// <summary>Σt of the dropped-and-rescaled τt, added in task order (as N reads would be).</summary>
    public torch.Tensor Sum(string tensorName)
    {
        using var scope = torch.NewDisposeScope();
        var all = ReadBatch(tensorName).SubtractBase();
        var sum = all[0];
        for (int t = 1; t < all.Length; t++)
        {
            sum.add_(all[t]);
            all[t].Dispose();
        }

        return sum.MoveToOuterDisposeScope();
    }

    /// <summary>The drop threshold: an entry is dropped when its 64-bit draw is below this, probability p.</summary>
    internal static ulong DropThreshold(double p)
    {
        const double twoTo64 = 18446744073709551616.0;
        double scaled = p * twoTo64;
        return scaled <= 0 ? 0UL : scaled >= twoTo64 ? ulong.MaxValue : (ulong)scaled;
    }

    /// <summary>
    /// Drops (sets to +0) each entry of the contiguous float32 <paramref name="tau"/> whose draw from
    /// the stream <paramref name="key"/> falls below p and multiplies the others by (float)(1/(1−p)),
    /// in place. p = 0 leaves the tensor unchanged.
    /// </summary>
    internal static unsafe void DropAndRescale(torch.Tensor tau, ulong key, double p) =>
        DropAndRescale(FloatKernels.Pointer(tau), null, tau.numel(), key, p);

    /// <summary>
    /// The same on raw memory: <paramref name="x"/>[i] becomes the dropped-and-rescaled value of
    /// τ[i] = x[i] − <paramref name="baseValues"/>[i] (or of x[i] when there is no base), entry i
    /// being the tensor's entry <paramref name="first"/> + i.
    /// </summary>
    internal static unsafe void DropAndRescale(float* x, float* baseValues, long n, ulong key, double p, long first = 0)
    {
        if (n == 0)
        {
            return;
        }

        var data = (IntPtr)x;
        var @base = (IntPtr)baseValues;
        if (p == 0)
        {
            if (baseValues is not null)
            {
                FloatKernels.ForRanges(n, FloatKernels.Pieces(n), (_, start, end) =>
                {
                    for (long i = start; i < end; i++)
                    {
                        ((float*)data)[i] -= ((float*)@base)[i];
                    }
                });
            }

            return;
        }

        ulong threshold = DropThreshold(p);
        float scale = (float)(1.0 / (1.0 - p));
        // DropRange indexes by the tensor's entry (the draw's position): shift the pointers back by `first`.
        FloatKernels.ForRanges(n, FloatKernels.Pieces(n), (_, start, end) => DropRange(
            (float*)data - first, @base == IntPtr.Zero ? null : (float*)@base - first, first + start, first + end, key, threshold, scale));
    }

    /// <summary>Entries [start, end): 16 or 8 at a time with 512- or 256-bit vectors where available, then one by one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void DropRange(float* x, float* b, long start, long end, ulong key, ulong threshold, float scale)
    {
        long i = start;
        if (Vector512.IsHardwareAccelerated)
        {
            // Lanes hold the SplitMix64 states of entries i … i+15 with Mix's own +γ already added.
            ulong first = unchecked(key + ((ulong)i + 1) * Gamma);
            var low = Vector512.Create(first, unchecked(first + Gamma), unchecked(first + 2 * Gamma), unchecked(first + 3 * Gamma),
                unchecked(first + 4 * Gamma), unchecked(first + 5 * Gamma), unchecked(first + 6 * Gamma), unchecked(first + 7 * Gamma));
            var high = low + Vector512.Create(unchecked(8 * Gamma));
            var step = Vector512.Create(unchecked(16 * Gamma));
            var limit = Vector512.Create(threshold);
            var factor = Vector512.Create(scale);
            for (; i + 16 <= end; i += 16)
            {
                var keep = Vector512.Narrow(
                    Vector512.GreaterThanOrEqual(Finalize(low), limit),
                    Vector512.GreaterThanOrEqual(Finalize(high), limit));
                var tau = b is null ? Vector512.Load(x + i) : Vector512.Load(x + i) - Vector512.Load(b + i);
                ((tau * factor).AsUInt32() & keep).AsSingle().Store(x + i);
                low += step;
                high += step;
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            // Lanes hold the SplitMix64 states of entries i … i+7 with Mix's own +γ already added.
            ulong first = unchecked(key + ((ulong)i + 1) * Gamma);
            var low = Vector256.Create(first, unchecked(first + Gamma), unchecked(first + 2 * Gamma), unchecked(first + 3 * Gamma));
            var high = low + Vector256.Create(unchecked(4 * Gamma));
            var step = Vector256.Create(unchecked(8 * Gamma));
            var limit = Vector256.Create(threshold);
            var factor = Vector256.Create(scale);
            for (; i + 8 <= end; i += 8)
            {
                // Narrow keeps the low 32 bits of each 64-bit lane: all ones (keep) or 0 (drop), in entry order.
                var keep = Vector256.Narrow(
                    Vector256.GreaterThanOrEqual(Finalize(low), limit),
                    Vector256.GreaterThanOrEqual(Finalize(high), limit));
                var tau = b is null ? Vector256.Load(x + i) : Vector256.Load(x + i) - Vector256.Load(b + i);
                ((tau * factor).AsUInt32() & keep).AsSingle().Store(x + i);
                low += step;
                high += step;
            }
        }

        ulong state = unchecked(key + (ulong)i * Gamma);
        for (; i < end; i++, state = unchecked(state + Gamma))
        {
            // keep = all ones when r ≥ threshold, else 0: dropped entries become +0 without a branch.
            uint keep = (uint)-(int)(StableHash.Mix(state) >= threshold ? 1 : 0);
            float tau = b is null ? x[i] : x[i] - b[i];
            ((uint*)x)[i] = BitConverter.SingleToUInt32Bits(tau * scale) & keep;
        }
    }

    /// <summary>SplitMix64's output function (<see cref="StableHash.Mix"/> without its +γ) on eight lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<ulong> Finalize(Vector512<ulong> z)
    {
        z = (z ^ (z >> 30)) * Vector512.Create(0xBF58476D1CE4E5B9UL);
        z = (z ^ (z >> 27)) * Vector512.Create(0x94D049BB133111EBUL);
        return z ^ (z >> 31);
    }

    /// <summary>SplitMix64's output function (<see cref="StableHash.Mix"/> without its +γ) on four lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<ulong> Finalize(Vector256<ulong> z)
    {
        z = (z ^ (z >> 30)) * Vector256.Create(0xBF58476D1CE4E5B9UL);
        z = (z ^ (z >> 27)) * Vector256.Create(0x94D049BB133111EBUL);
        return z ^ (z >> 31);
    }
}
