using System.Numerics;
using System.Runtime.CompilerServices;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// Where a <see cref="TaskBatchKernel"/> reads one tensor of every task at once: a task-vector set
/// through tensors (<see cref="TaskTensors.Source"/>) or safetensors files through their bytes
/// (the byte-level path of <see cref="ModelMerger.MergeToFile"/>).
/// </summary>
internal interface ITaskBatchSource
{
    /// <summary>Number of tasks.</summary>
    int Count { get; }

    /// <summary>The tensors to merge, in a fixed order.</summary>
    IReadOnlyList<string> TensorNames { get; }

    /// <summary>Shape of the named tensor.</summary>
    long[] GetShape(string tensorName);

    /// <summary>
    /// Reads <paramref name="tensorName"/> of every task and calls <paramref name="use"/> with it;
    /// the batch's memory is valid, and may be written, during the call only.
    /// </summary>
    void Read(string tensorName, Action<TaskBatch> use);

    /// <summary>
    /// Reads the entry ranges [Start, Start + Length) of <paramref name="tensorName"/> of every task
    /// (ascending, not overlapping) and calls <paramref name="use"/>(Start, batch of that range) for
    /// each; a source over files reads only those ranges. The memory is valid during the call only.
    /// </summary>
    void ReadRanges(string tensorName, IReadOnlyList<(long Start, long Length)> ranges, Action<long, TaskBatch> use);
}

/// <summary>
/// A merge computed entry by entry over float32 task memory (TIES, DARE, the sum of task
/// arithmetic under DARE). The same kernel serves <see cref="MergeMethod.MergeTensor"/> over
/// tensors and the byte-level path of <see cref="ModelMerger.MergeToFile"/>, so both give the same
/// bits. A kernel holds what its <see cref="Prepare"/> found and serves one source.
/// </summary>
internal abstract unsafe class TaskBatchKernel
{
    /// <summary>A pass over every tensor of <paramref name="source"/> before merging; the default has none.</summary>
    public virtual void Prepare(ITaskBatchSource source, IProgress<double>? progress, CancellationToken cancellationToken) =>
        progress?.Report(1.0);

    /// <summary>Writes the merged delta of <paramref name="tensorName"/> (<c>batch.Length</c> float32 entries) to <paramref name="delta"/>.</summary>
    public abstract void Merge(string tensorName, TaskBatch batch, float* delta);

    /// <summary>
    /// Writes θ = θ0 + delta to <paramref name="merged"/>: the delta, then θ0 added to it in float32,
    /// which is what <see cref="MergedCheckpoint"/> does with the delta (θ0.add_(delta)).
    /// </summary>
    public void MergeOnto(string tensorName, TaskBatch batch, float* theta0, float* merged)
    {
        Merge(tensorName, batch, merged);
        var (b, m) = ((IntPtr)theta0, (IntPtr)merged);
        FloatKernels.ForRanges(batch.Length, FloatKernels.Pieces(batch.Length), (_, start, end) => Add((float*)b, (float*)m, start, end));
    }

    /// <summary>m[i] = b[i] + m[i] over [start, end).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Add(float* b, float* m, long start, long end)
    {
        long i = start;
        for (; i + Vector<float>.Count <= end; i += Vector<float>.Count)
        {
            Unsafe.WriteUnaligned(m + i, Unsafe.ReadUnaligned<Vector<float>>(b + i) + Unsafe.ReadUnaligned<Vector<float>>(m + i));
        }

        for (; i < end; i++)
        {
            m[i] = b[i] + m[i];
        }
    }
}
