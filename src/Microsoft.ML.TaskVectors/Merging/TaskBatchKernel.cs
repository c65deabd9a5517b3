using System.Numerics;
using System.Runtime.CompilerServices;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// Where a <see cref="TaskBatchKernel"/> reads the tensors of every task at once: a task-vector set
/// through tensors (<see cref="TaskTensors.Source"/>) or safetensors files through their bytes
/// (the byte-level path of <see cref="ModelMerger.MergeToFile"/>).
/// </summary>
internal interface ITaskBatchSource
{
    /// <summary>Number of tasks.</summary>
    int Count { get; }

    /// <summary>The tensors to merge, in a fixed order.</summary>
    IReadOnlyList<string> TensorNames { get; }

    /// <summary>Threads <see cref="ReadChunks"/> spreads a tensor over.</summary>
    int Workers { get; }

    /// <summary>Shape of the named tensor.</summary>
    long[] GetShape(string tensorName);

    /// <summary>Entries of the named tensor (the product of its shape).</summary>
    long Entries(string tensorName) => GetShape(tensorName).Aggregate(1L, (a, b) => a * b);

    /// <summary>
    /// Reads <paramref name="tensorName"/> of every task as consecutive chunks that cover it and
    /// calls <paramref name="use"/>(worker, start, chunk) for each: concurrently for different
    /// workers (0 … <see cref="Workers"/> − 1), one chunk at a time for each. A chunk's memory is
    /// valid, and may be written, during its call only.
    /// </summary>
    void ReadChunks(string tensorName, Action<int, long, TaskBatch> use);

    /// <summary>
    /// Reads the entry ranges [Start, Start + Length) of <paramref name="tensorName"/> of every task
    /// (ascending, not overlapping) and calls <paramref name="use"/>(Start, batch of that range) for
    /// each, in order; a source over files reads only those ranges. Calls for different workers
    /// (0 … <see cref="Workers"/> − 1) may run at once. The memory is valid during the call only.
    /// </summary>
    void ReadRanges(int worker, string tensorName, IReadOnlyList<(long Start, long Length)> ranges, Action<long, TaskBatch> use);
}

/// <summary>
/// What the chunks of one tensor, merged separately, leave for the end of the tensor: TIES's vote
/// for the tensor's majority sign, and the values that the entries waiting for it take if it is −.
/// Thread-safe.
/// </summary>
internal sealed class TensorEnd
{
    private readonly List<(long Position, float Value)> _ifNegative = [];
    private long _balance;

    /// <summary>Adds a chunk's #(sum &gt; 0) − #(sum &lt; 0) and its undecided entries' values under the sign −.</summary>
    public void Add(long balance, IReadOnlyList<(long Position, float Value)>? ifNegative)
    {
        Interlocked.Add(ref _balance, balance);
        if (ifNegative is { Count: > 0 })
        {
            lock (_ifNegative)
            {
                _ifNegative.AddRange(ifNegative);
            }
        }
    }

    /// <summary>Once every chunk is in: the entries to overwrite (none when the majority sign is +).</summary>
    public IReadOnlyList<(long Position, float Value)> Patches => Interlocked.Read(ref _balance) < 0 ? _ifNegative : [];
}

/// <summary>
/// A merge computed entry by entry over float32 task memory (TIES, DARE, the sum of task
/// arithmetic under DARE). The same kernel serves <see cref="MergeMethod.MergeTensor"/> over
/// tensors and the byte-level path of <see cref="ModelMerger.MergeToFile"/>, which merges tensors
/// chunk by chunk on several threads; both give the same bits. A kernel holds what its
/// <see cref="Prepare"/> found and serves one source.
/// </summary>
internal abstract unsafe class TaskBatchKernel
{
    /// <summary>
    /// Entries of a chunk: 256 KB of float32, so that a thread's N + 2 chunks stay in the caches,
    /// while chunks stay large enough that the N + 1 reads per chunk cost little.
    /// </summary>
    public const long ChunkEntries = 1 << 16;

    /// <summary>A pass over every tensor of <paramref name="source"/> before merging; the default has none.</summary>
    public virtual void Prepare(ITaskBatchSource source, IProgress<double>? progress, CancellationToken cancellationToken) =>
        progress?.Report(1.0);

    /// <summary>Writes the merged delta of a whole tensor (<c>batch.Length</c> float32 entries) to <paramref name="delta"/>, on every core.</summary>
    public abstract void Merge(string tensorName, TaskBatch batch, float* delta);

    /// <summary>
    /// Writes θ = θ0 + delta of the tensor's entries [start, start + chunk.Length) to
    /// <paramref name="merged"/> (θ0 at <paramref name="theta0"/>, both chunk-relative), on the
    /// calling thread; what only the whole tensor decides goes to <paramref name="end"/>. The
    /// default merges the chunk as a tensor, which is right for kernels that work entry by entry.
    /// </summary>
    public virtual void MergeChunk(string tensorName, TaskBatch chunk, long start, float* theta0, float* merged, TensorEnd end)
    {
        Merge(tensorName, chunk, merged);
        AddBase(theta0, merged, 0, chunk.Length);
    }

    /// <summary>
    /// m[i] = b[i] + m[i] over [start, end): θ0 added to the delta in float32, which is what
    /// <see cref="MergedCheckpoint"/> does with the delta (θ0.add_(delta)).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void AddBase(float* b, float* m, long start, long end)
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
