using Microsoft.ML.TaskVectors.TaskVectors;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// DARE (drop and rescale): drops each task-vector entry with probability p, rescales the survivors
/// by 1/(1−p), then merges with an inner method (task arithmetic or TIES). The drop mask of a
/// (task, tensor) pair is derived from (seed, task index, a stable hash of the tensor name), so it is
/// identical each time the pair is read (TIES reads tensors in Prepare and again in MergeTensor).
/// </summary>
public sealed class DareMerging : MergeMethod
{
    private DropAndRescaleTaskVectorSet? _wrapped;

    /// <summary>Creates the method.</summary>
    /// <param name="inner">The merge applied to the dropped-and-rescaled task vectors (task arithmetic or TIES).</param>
    /// <param name="p">Drop probability, in [0, 1).</param>
    /// <param name="seed">Seed of the drop masks.</param>
    public DareMerging(MergeMethod inner, double p = 0.5, long seed = 0)
    {
        ArgumentNullException.ThrowIfNull(inner);
        if (double.IsNaN(p) || p < 0 || p >= 1)
        {
            throw new ArgumentOutOfRangeException(nameof(p), p, $"Option 'p' (drop probability) must be in [0, 1); got {p}.");
        }

        Inner = inner;
        P = p;
        Seed = seed;
    }

    /// <summary>The merge applied after dropping and rescaling.</summary>
    public MergeMethod Inner { get; }

    /// <summary>Drop probability p.</summary>
    public double P { get; }

    /// <summary>Seed of the drop masks.</summary>
    public long Seed { get; }

    /// <inheritdoc />
    public override string Name => "dare-" + Inner.Name;

    /// <inheritdoc />
    public override void Prepare(ITaskVectorSet taskVectors, IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(taskVectors);
        Inner.Prepare(Wrap(taskVectors), progress, cancellationToken);
    }

    /// <inheritdoc />
    public override torch.Tensor MergeTensor(string tensorName, ITaskVectorSet taskVectors)
    {
        ValidateArguments(tensorName, taskVectors);
        return Inner.MergeTensor(tensorName, Wrap(taskVectors));
    }

    internal override TaskBatchKernel? CreateKernel() => Inner.CreateKernel() is { } inner ? new Kernel(inner, P, Seed) : null;

    /// <summary>The dropped-and-rescaled view of <paramref name="taskVectors"/> (the same instance for the same set).</summary>
    internal ITaskVectorSet Wrap(ITaskVectorSet taskVectors)
    {
        var wrapped = _wrapped;
        if (wrapped is null || !ReferenceEquals(wrapped.Inner, taskVectors))
        {
            wrapped = new DropAndRescaleTaskVectorSet(taskVectors, P, Seed);
            _wrapped = wrapped;
        }

        return wrapped;
    }

    /// <summary>
    /// The inner method's kernel over dropped-and-rescaled task memory: each batch, in Prepare's
    /// passes and in the merge, is dropped in place first (the masks are those of
    /// <see cref="DropAndRescaleTaskVectorSet"/>, fused with θt − θ0).
    /// </summary>
    private sealed unsafe class Kernel(TaskBatchKernel inner, double p, long seed) : TaskBatchKernel
    {
        public override void Prepare(ITaskBatchSource source, IProgress<double>? progress, CancellationToken cancellationToken) =>
            inner.Prepare(new DroppedSource(source, p, seed), progress, cancellationToken);

        public override void Merge(string tensorName, TaskBatch batch, float* delta) =>
            inner.Merge(tensorName, DropAndRescaleTaskVectorSet.Drop(batch, tensorName, p, seed), delta);

        public override void MergeChunk(string tensorName, TaskBatch chunk, long start, float* theta0, float* merged, TensorEnd end) =>
            inner.MergeChunk(tensorName, DropAndRescaleTaskVectorSet.Drop(chunk, tensorName, p, seed, start), start, theta0, merged, end);

        private sealed class DroppedSource(ITaskBatchSource source, double p, long seed) : ITaskBatchSource
        {
            public int Count => source.Count;

            public IReadOnlyList<string> TensorNames => source.TensorNames;

            public int Workers => source.Workers;

            public long[] GetShape(string tensorName) => source.GetShape(tensorName);

            public void ReadChunks(string tensorName, Action<int, long, TaskBatch> use) =>
                source.ReadChunks(tensorName, (worker, start, chunk) => use(worker, start, DropAndRescaleTaskVectorSet.Drop(chunk, tensorName, p, seed, start)));

            public void ReadRanges(int worker, string tensorName, IReadOnlyList<(long Start, long Length)> ranges, Action<long, TaskBatch> use) =>
                source.ReadRanges(worker, tensorName, ranges, (start, batch) => use(start, DropAndRescaleTaskVectorSet.Drop(batch, tensorName, p, seed, start)));
        }
    }
}
