namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>Options for <see cref="MergeMethods.Create"/>; each method reads the options it uses.</summary>
public sealed class MergeMethodOptions
{
    /// <summary>
    /// Scaling coefficient λ for task arithmetic, TIES, DARE and negation; null uses each method's
    /// own default (task arithmetic 0.3, TIES 1.0, negation 1.0).
    /// </summary>
    public double? Lambda { get; set; }

    /// <summary>TIES: fraction of entries kept per task, in (0, 1]. Default 0.2.</summary>
    public double K { get; set; } = 0.2;

    /// <summary>TIES: global or per-tensor magnitude ranking. Default global.</summary>
    public TiesRanking Ranking { get; set; } = TiesRanking.Global;

    /// <summary>TIES: disjoint mean or disjoint sum. Default disjoint mean.</summary>
    public TiesAggregation Aggregation { get; set; } = TiesAggregation.DisjointMean;

    /// <summary>DARE: drop probability, in [0, 1). Default 0.5.</summary>
    public double P { get; set; } = 0.5;

    /// <summary>DARE: seed of the drop masks. Default 0.</summary>
    public long Seed { get; set; }

    /// <summary>TSV-M: scaling coefficient α. Default 1.0.</summary>
    public double Alpha { get; set; } = 1.0;

    /// <summary>WUDI: Adam's learning rate. Default 1e-5.</summary>
    public double WudiLearningRate { get; set; } = 1e-5;

    /// <summary>WUDI: Adam steps per 2-D tensor. Default 300.</summary>
    public int WudiSteps { get; set; } = 300;

    /// <summary>
    /// TSV-M and WUDI, the compute-bound methods: where they compute, <c>auto</c> (default: CUDA device 0 when
    /// available, else the CPU), <c>cpu</c>, <c>cuda</c> or <c>cuda:N</c> (see <see cref="Runtime.ComputeDevice.Resolve"/>).
    /// The other methods stream the checkpoints through the CPU, which their speed is bound by.
    /// </summary>
    public string Device { get; set; } = Runtime.ComputeDevice.Auto;

    /// <summary>With a CUDA <see cref="Device"/>: fail when it cannot be used instead of falling back to the CPU.</summary>
    public bool RequireDevice { get; set; }
}
