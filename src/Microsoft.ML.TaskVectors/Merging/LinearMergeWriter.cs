using System.Buffers;
using System.Numerics;
using System.Runtime.InteropServices;
using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.TaskVectors;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// The fast path of <see cref="ModelMerger.MergeToFile"/> for merges that are fixed linear combinations
/// (averaging, task arithmetic, negation) of task vectors read straight from safetensors files: each
/// output tensor is c0·θ0 + Σt wt·θt (or θ0 + Σt wt·τt for stored task vectors) computed over the raw
/// bytes of the files, read in parallel and combined in one vectorised pass, with no tensors in between.
/// </summary>
internal static class LinearMergeWriter
{
    private sealed record Source(SafetensorsReader Reader, double Weight);

    /// <summary>Writes the merge and returns true, or returns false (writing nothing) when the fast path does not apply.</summary>
    public static bool TryWrite(Checkpoint @base, ITaskVectorSet taskVectors, MergeMethod method, string outputPath,
        IProgress<double>? progress, CancellationToken cancellationToken)
    {
        if (@base is not SafetensorsReader baseReader || taskVectors is not TaskVectorPool { StorageDType: TensorDType.F32 } pool)
            return false;
        var weights = method.LinearTaskWeights(pool.Count);
        if (weights is null) return false;
        var sources = new List<Source>();
        bool differences = pool.TaskVectors.All(t => ReferenceEquals(t.BaseCheckpoint, @base));
        if (!differences && !pool.TaskVectors.All(t => t.BaseCheckpoint is null)) return false;
        for (int t = 0; t < pool.Count; t++)
        {
            if (pool.TaskVectors[t].SourceCheckpoint is not SafetensorsReader reader) return false;
            sources.Add(new Source(reader, weights[t]));
        }
        // θ0 + Σ wt·(θt − θ0) = (1 − Σ wt)·θ0 + Σ wt·θt; stored τ files add to θ0 as they are.
        double baseWeight = differences ? 1 - weights.Sum() : 1;
        sources.Insert(0, new Source(baseReader, baseWeight));
        static bool Supported(TensorDType d) => d is TensorDType.F32 or TensorDType.F16 or TensorDType.BF16;
        foreach (var name in pool.TensorNames)
        {
            var info = baseReader.GetInfo(name);
            if (!Supported(info.DType) || sources.Any(s => !s.Reader.Contains(name) || s.Reader.GetInfo(name) is var i
                    && (!Supported(i.DType) || !i.Shape.AsSpan().SequenceEqual(info.Shape))))
                return false;
        }

        var merged = new HashSet<string>(pool.TensorNames, StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(@base.Metadata, StringComparer.Ordinal)
        {
            ["merge_method"] = method.Name,
            ["merged_tasks"] = string.Join(",", pool.TaskNames),
        };
        long largest = @base.Tensors.Max(t => t.ElementCount * 4);
        var inputs = sources.Select(_ => ArrayPool<byte>.Shared.Rent((int)largest)).ToArray();
        var output = ArrayPool<byte>.Shared.Rent((int)largest);
        try
        {
            using var writer = SafetensorsWriter.Create(outputPath, @base.Tensors, metadata);
            for (int i = 0; i < @base.Tensors.Count; i++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var info = @base.Tensors[i];
                var bytes = output.AsSpan(0, (int)info.ByteLength);
                if (!merged.Contains(info.Name)) baseReader.ReadBytes(info.Name, bytes);
                else Combine(info, sources, inputs, bytes);
                writer.WriteBytes(info.Name, bytes);
                progress?.Report((double)(i + 1) / @base.Tensors.Count);
            }
            writer.Commit();
        }
        finally
        {
            foreach (var b in inputs) ArrayPool<byte>.Shared.Return(b);
            ArrayPool<byte>.Shared.Return(output);
        }
        return true;
    }

    private static void Combine(TensorInfo info, List<Source> sources, byte[][] inputs, Span<byte> destination)
    {
        int n = checked((int)info.ElementCount);
        var dtypes = new TensorDType[sources.Count];
        Parallel.For(0, sources.Count, s =>
        {
            var source = sources[s].Reader.GetInfo(info.Name);
            dtypes[s] = source.DType;
            sources[s].Reader.ReadBytes(info.Name, inputs[s].AsSpan(0, (int)source.ByteLength));
        });
        var accumulator = ArrayPool<float>.Shared.Rent(n);
        try
        {
            int pieces = Math.Max(1, Math.Min(Environment.ProcessorCount, n / (1 << 16)));
            Parallel.For(0, pieces, piece =>
            {
                int start = (int)((long)n * piece / pieces), end = (int)((long)n * (piece + 1) / pieces);
                var acc = accumulator.AsSpan(start, end - start);
                acc.Clear();
                for (int s = 0; s < sources.Count; s++)
                    AddScaled(acc, inputs[s], dtypes[s], start, (float)sources[s].Weight);
            });
            WriteOut(accumulator.AsSpan(0, n), destination, info.DType);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(accumulator);
        }
    }

    /// <summary>acc += weight · source[start … start + acc.Length) for a source in F32, F16 or BF16.</summary>
    private static void AddScaled(Span<float> acc, byte[] source, TensorDType dtype, int start, float weight)
    {
        if (weight == 0) return;
        switch (dtype)
        {
            case TensorDType.F32:
            {
                var x = MemoryMarshal.Cast<byte, float>(source.AsSpan(start * 4, acc.Length * 4));
                int i = 0;
                if (Vector.IsHardwareAccelerated)
                {
                    var w = new Vector<float>(weight);
                    var accV = MemoryMarshal.Cast<float, Vector<float>>(acc);
                    var xV = MemoryMarshal.Cast<float, Vector<float>>(x);
                    for (int v = 0; v < accV.Length; v++) accV[v] += w * xV[v];
                    i = accV.Length * Vector<float>.Count;
                }
                for (; i < acc.Length; i++) acc[i] += weight * x[i];
                break;
            }
            case TensorDType.F16:
            {
                var x = MemoryMarshal.Cast<byte, Half>(source.AsSpan(start * 2, acc.Length * 2));
                for (int i = 0; i < acc.Length; i++) acc[i] += weight * (float)x[i];
                break;
            }
            default:
            {
                var x = MemoryMarshal.Cast<byte, ushort>(source.AsSpan(start * 2, acc.Length * 2));
                for (int i = 0; i < acc.Length; i++) acc[i] += weight * BitConverter.Int32BitsToSingle(x[i] << 16);
                break;
            }
        }
    }

    /// <summary>The accumulated values in the output's element type (round to nearest even for BF16).</summary>
    private static void WriteOut(ReadOnlySpan<float> values, Span<byte> destination, TensorDType dtype)
    {
        switch (dtype)
        {
            case TensorDType.F32:
                MemoryMarshal.AsBytes(values).CopyTo(destination);
                break;
            case TensorDType.F16:
            {
                var d = MemoryMarshal.Cast<byte, Half>(destination);
                for (int i = 0; i < values.Length; i++) d[i] = (Half)values[i];
                break;
            }
            default:
            {
                var d = MemoryMarshal.Cast<byte, ushort>(destination);
                for (int i = 0; i < values.Length; i++)
                {
                    uint bits = BitConverter.SingleToUInt32Bits(values[i]);
                    d[i] = float.IsNaN(values[i]) ? (ushort)((bits >> 16) | 0x40) : (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
                }
                break;
            }
        }
    }
}
