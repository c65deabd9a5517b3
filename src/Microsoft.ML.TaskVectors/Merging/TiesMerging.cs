using Microsoft.ML.TaskVectors.TaskVectors;
using Microsoft.ML.TaskVectors.Runtime;
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
/// With <see cref="TiesRanking.Global"/>, <see cref="Prepare"/> must run first: it streams every
/// task vector twice to find each task's exact global threshold with a two-level histogram over
/// the float bit patterns, in memory independent of the model size.
/// </remarks>
public sealed class TiesMerging : MergeMethod
{
    private ITaskVectorSet? _preparedSet;
    private float?[]? _globalThresholds;

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
    /// by streaming its tensors twice (reports progress, honours cancellation). Does nothing for
    /// <see cref="TiesRanking.PerTensor"/>.
    /// </summary>
    public override void Prepare(ITaskVectorSet taskVectors, IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(taskVectors);
        if (Ranking != TiesRanking.Global)
        {
            progress?.Report(1.0);
            return;
        }

        _preparedSet = null;
        _globalThresholds = null;
        var names = taskVectors.TensorNames;
        long entries = 0;
        foreach (var name in names)
        {
            entries += taskVectors.GetShape(name).Aggregate(1L, (a, b) => a * b);
        }

        long keep = MagnitudeThreshold.KeepCount(K, entries);
        var thresholds = new float?[taskVectors.Count];
        var heap = new NativeHeap.Guard(256L << 20);
        double totalSteps = Math.Max(1.0, 2.0 * taskVectors.Count * names.Count);
        long done = 0;
        progress?.Report(0.0);
        for (int task = 0; task < taskVectors.Count; task++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            thresholds[task] = MagnitudeThreshold.Find(keep, visit =>
            {
                foreach (var name in names)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    using (var scope = torch.NewDisposeScope())
                    {
                        visit(taskVectors.Get(task, name));
                    }

                    heap.Check();

                    progress?.Report(++done / totalSteps);
                }
            });
            done = 2L * (task + 1) * names.Count; // a count of 0 skips both passes
            progress?.Report(done / totalSteps);
        }

        _globalThresholds = thresholds;
        _preparedSet = taskVectors;
        progress?.Report(1.0);
    }

    /// <summary>The global threshold of one task after <see cref="Prepare"/> (null: keeps nothing).</summary>
    internal float? GetGlobalThreshold(int task) =>
        _globalThresholds is null ? throw NotPrepared() : _globalThresholds[task];

    /// <inheritdoc />
    public override torch.Tensor MergeTensor(string tensorName, ITaskVectorSet taskVectors)
    {
        ValidateArguments(tensorName, taskVectors);
        if (Ranking == TiesRanking.Global)
        {
            if (_globalThresholds is null)
            {
                throw NotPrepared();
            }

            if (!ReferenceEquals(_preparedSet, taskVectors))
            {
                throw new InvalidOperationException("TIES with global ranking was prepared for a different task-vector set; Prepare must be called with the set passed to MergeTensor.");
            }
        }

        using var scope = torch.NewDisposeScope();
        int n = taskVectors.Count;
        var kept = new torch.Tensor[n];
        torch.Tensor? sum = null;
        for (int t = 0; t < n; t++)
        {
            // Per-task scope: only the trimmed τ outlives the iteration, so live memory stays ~N+4 tensors.
            using var taskScope = torch.NewDisposeScope();
            var tau = taskVectors.Get(t, tensorName);
            float? threshold = Ranking == TiesRanking.Global
                ? _globalThresholds![t]
                : MagnitudeThreshold.Find(tau, MagnitudeThreshold.KeepCount(K, tau.numel()));
            kept[t] = threshold is float thr
                ? tau.masked_fill_(tau.abs().lt(thr), 0.0f)
                : tau.zero_();
            kept[t].MoveToOuterDisposeScope();
            if (sum is null) sum = kept[t].clone().MoveToOuterDisposeScope();
            else sum.add_(kept[t]);
        }

        var elected = sum!.sign_();
        long signBalance = elected.sum(torch.ScalarType.Int64).item<long>();
        elected.masked_fill_(elected.eq(0.0f), signBalance >= 0 ? 1.0f : -1.0f);

        var agreeingSum = torch.zeros_like(elected);
        var agreeingCount = torch.zeros_like(elected);
        foreach (var values in kept)
        {
            using var taskScope = torch.NewDisposeScope();
            var agrees = values.sign().eq_(elected);
            agreeingSum.add_(values.mul_(agrees));
            agreeingCount.add_(agrees);
            values.Dispose();
        }

        var merged = Aggregation == TiesAggregation.DisjointMean
            ? agreeingSum.div_(agreeingCount.clamp_min_(1.0f))
            : agreeingSum;
        return merged.mul_(Lambda).MoveToOuterDisposeScope();
    }

    private static InvalidOperationException NotPrepared() =>
        new("TIES with global ranking needs the global magnitude thresholds: Prepare must be called with the task-vector set before MergeTensor.");
}
