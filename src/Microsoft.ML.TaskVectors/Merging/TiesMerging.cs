using Microsoft.ML.TaskVectors.TaskVectors;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// TIES merging (trim, elect sign, disjoint merge). Per task, keep the top-k fraction of entries by
/// magnitude: keep count floor(k·d) for d entries, threshold = magnitude of the count-th largest
/// entry, every entry with magnitude ≥ threshold is kept (ties at the threshold may keep a few more;
/// count 0 keeps nothing). Elect a sign per entry as the sign of the sum of the kept values; an
/// entry whose kept values sum to exactly 0 takes the tensor's majority sign (sign of the sum of the
/// elected signs over the tensor, + if that is 0 too). Combine the kept values that agree with the
/// elected sign (mean or sum) and scale by λ.
/// </summary>
/// <remarks>
/// With <see cref="TiesRanking.Global"/>, <see cref="Prepare"/> must run first: it finds each
/// task's exact global threshold by a search over the float bit patterns that samples about 1/64
/// of the entries and then usually streams the task vectors once (see
/// <see cref="MagnitudeThreshold"/>), in memory independent of the model size. Both the search and the
/// merge itself run as C# kernels over float32 memory (see <see cref="TiesKernel"/>) — the tensors',
/// or on <see cref="ModelMerger.MergeToFile"/>'s byte-level path the files' own bytes — and give
/// bit for bit what the tensor formulation gives.
/// </remarks>
public sealed class TiesMerging : MergeMethod
{
    private ITaskVectorSet? _preparedSet;
    private Kernel? _prepared;

    /// <summary>Creates the method.</summary>
    /// <param name="k">Fraction of entries kept per task, in (0, 1].</param>
    /// <param name="lambda">Scaling coefficient λ, finite and ≥ 0.</param>
    /// <param name="ranking">Global (whole task vector) or per-tensor magnitude ranking.</param>
    /// <param name="aggregation">Disjoint mean or disjoint sum of the agreeing kept values.</param>
    public TiesMerging(double k = 0.2, double lambda = 1.0, TiesRanking ranking = TiesRanking.Global, TiesAggregation aggregation = TiesAggregation.DisjointMean)
    {
        if (double.IsNaN(k) || k <= 0 || k > 1)
        {
            throw new ArgumentOutOfRangeException(nameof(k), k, $"Option 'k' (fraction of entries kept per task) must be in (0, 1]; got {k}.");
        }

        RequireNonNegativeFinite(lambda, nameof(lambda));
        if (!Enum.IsDefined(ranking))
        {
            throw new ArgumentOutOfRangeException(nameof(ranking), ranking, $"Option 'ranking' must be one of {string.Join(", ", Enum.GetNames<TiesRanking>())}.");
        }

        if (!Enum.IsDefined(aggregation))
        {
            throw new ArgumentOutOfRangeException(nameof(aggregation), aggregation, $"Option 'aggregation' must be one of {string.Join(", ", Enum.GetNames<TiesAggregation>())}.");
        }

        K = k;
        Lambda = lambda;
        Ranking = ranking;
        Aggregation = aggregation;
    }

    /// <summary>Fraction of entries kept per task.</summary>
    public double K { get; }

    /// <summary>Scaling coefficient λ.</summary>
    public double Lambda { get; }

    /// <summary>Magnitude ranking scope.</summary>
    public TiesRanking Ranking { get; }

    /// <summary>How agreeing kept values are combined.</summary>
    public TiesAggregation Aggregation { get; }

    /// <inheritdoc />
    public override string Name => "ties";

    /// <summary>
    /// For <see cref="TiesRanking.Global"/>, computes each task's exact global magnitude threshold
    /// from a sample and (usually) one pass over the task vectors (reports progress, honours
    /// cancellation). Does nothing for <see cref="TiesRanking.PerTensor"/>.
    /// </summary>
    /// <remarks>
    /// Each pass reads every tensor once for all tasks together (a pool over one base reads the base
    /// once per tensor, not once per task).
    /// </remarks>
    public override void Prepare(ITaskVectorSet taskVectors, IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(taskVectors);
        if (Ranking != TiesRanking.Global)
        {
            progress?.Report(1.0);
            return;
        }

        _preparedSet = null;
        _prepared = null;
        var kernel = new Kernel(this);
        kernel.Prepare(TaskTensors.Source(taskVectors), progress, cancellationToken);
        _prepared = kernel;
        _preparedSet = taskVectors;
    }

    /// <summary>The global threshold of one task after <see cref="Prepare"/> (null: keeps nothing).</summary>
    internal float? GetGlobalThreshold(int task) =>
        _prepared?.GlobalThresholds is { } thresholds ? thresholds[task] : throw NotPrepared();

    /// <inheritdoc />
    /// <remarks>
    /// One pass over the N task tensors, in C# on all cores: per entry, the kept values
    /// kept_t = (|τt| &lt; threshold_t ? 0 : τt) are summed in task order, the elected sign is the
    /// sign of that sum, and the agreeing kept values are summed in task order and divided by their
    /// count — the same float32 operations, in the same order, as the tensor formulation
    /// (masked_fill, add, sign, mul by the agreement mask, div by the clamped count, mul by λ), so
    /// the result is identical. Entries whose sum is exactly 0 but hold a non-zero kept value need the
    /// tensor's majority sign, known only at the end: they are computed with + and redone with −
    /// when the majority turns out negative.
    /// </remarks>
    public override unsafe torch.Tensor MergeTensor(string tensorName, ITaskVectorSet taskVectors)
    {
        ValidateArguments(tensorName, taskVectors);
        var kernel = Ranking == TiesRanking.PerTensor ? new Kernel(this) : _prepared ?? throw NotPrepared();
        if (Ranking == TiesRanking.Global && !ReferenceEquals(_preparedSet, taskVectors))
        {
            throw new InvalidOperationException("TIES with global ranking was prepared for a different task-vector set; Prepare must be called with the set passed to MergeTensor.");
        }

        using var scope = torch.NewDisposeScope();
        var batch = TaskTensors.Read(taskVectors, tensorName);
        var merged = torch.empty(taskVectors.GetShape(tensorName), torch.ScalarType.Float32);
        if (batch.Length != merged.numel())
        {
            throw new ArgumentException($"Tensor '{tensorName}' of the task vectors does not have the shape the set declares.", nameof(taskVectors));
        }

        kernel.Merge(tensorName, batch, FloatKernels.Pointer(merged));
        return merged.MoveToOuterDisposeScope();
    }

    internal override TaskBatchKernel CreateKernel() => new Kernel(this);

    /// <summary>Each task's exact global threshold over every tensor of <paramref name="source"/>.</summary>
    private float?[] FindGlobalThresholds(ITaskBatchSource source, IProgress<double>? progress, CancellationToken cancellationToken)
    {
        long entries = source.TensorNames.Sum(source.Entries);
        long keep = MagnitudeThreshold.KeepCount(K, entries);
        return MagnitudeThreshold.Find(source, Enumerable.Repeat(keep, source.Count).ToArray(), progress, cancellationToken);
    }

    /// <summary>
    /// TIES over task memory, with the thresholds its <see cref="Prepare"/> found: each task's global
    /// one, or with per-tensor ranking each tensor's own (a kernel that was not prepared ranks each
    /// whole tensor it merges).
    /// </summary>
    private sealed unsafe class Kernel(TiesMerging ties) : TaskBatchKernel
    {
        private Dictionary<string, float?[]>? _perTensor;

        /// <summary>Each task's global threshold once prepared (global ranking only).</summary>
        public float?[]? GlobalThresholds { get; private set; }

        public override void Prepare(ITaskBatchSource source, IProgress<double>? progress, CancellationToken cancellationToken)
        {
            GlobalThresholds = null;
            _perTensor = null;
            if (ties.Ranking == TiesRanking.Global)
            {
                GlobalThresholds = ties.FindGlobalThresholds(source, progress, cancellationToken);
            }
            else
            {
                _perTensor = MagnitudeThreshold.FindPerTensor(source, length => MagnitudeThreshold.KeepCount(ties.K, length), progress, cancellationToken);
            }
        }

        public override void Merge(string tensorName, TaskBatch batch, float* delta) =>
            TiesKernel.Merge(batch, Thresholds(tensorName, batch), ties.Aggregation == TiesAggregation.DisjointMean, (float)ties.Lambda, delta);

        public override void MergeChunk(string tensorName, TaskBatch chunk, long start, float* theta0, float* merged, TensorEnd end) =>
            TiesKernel.MergeChunk(chunk, Thresholds(tensorName, null), ties.Aggregation == TiesAggregation.DisjointMean, (float)ties.Lambda, start, theta0, merged, end);

        /// <summary>The prepared thresholds, or those of the whole tensor <paramref name="batch"/> for per-tensor ranking.</summary>
        private float?[] Thresholds(string tensorName, TaskBatch? batch)
        {
            if (ties.Ranking == TiesRanking.Global)
            {
                return GlobalThresholds ?? throw NotPrepared();
            }

            if (_perTensor is not null)
            {
                return _perTensor.TryGetValue(tensorName, out var prepared) ? prepared
                    : throw new InvalidOperationException($"TIES was prepared for other tensors than '{tensorName}'.");
            }

            return batch is null
                ? throw new InvalidOperationException("TIES with per-tensor ranking merges chunks only once prepared.")
                : MagnitudeThreshold.Find(batch, Enumerable.Repeat(MagnitudeThreshold.KeepCount(ties.K, batch.Length), batch.Count).ToArray());
        }
    }

    private static InvalidOperationException NotPrepared() =>
        new("TIES with global ranking needs the global magnitude thresholds: Prepare must be called with the task-vector set before MergeTensor.");
}
