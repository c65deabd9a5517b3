namespace Microsoft.ML.TaskVectors.Trainers.Variational;

/// <summary>Options of an <see cref="InferenceNetwork"/> (SPEC section 2.3, "Inference network").</summary>
public sealed class InferenceNetworkOptions
{
    /// <summary>The parameter budget the paper reports for its inference network (≈0.75M for d = 512, N = 8, M = 158).</summary>
    public const long DefaultTargetParameterCount = 750_000;

    /// <summary>
    /// Width of both hidden layers. When null (the default) it is derived from <see cref="TargetParameterCount"/> by
    /// <see cref="InferenceNetwork.HiddenWidthFor"/>.
    /// </summary>
    public int? HiddenWidth { get; set; }

    /// <summary>The parameter count the derived hidden width aims at (default 750,000).</summary>
    public long TargetParameterCount { get; set; } = DefaultTargetParameterCount;

    /// <summary>
    /// μ at initialisation for every input: the μ head's weights start at zero and its bias at this value. The default 0
    /// starts from the pre-trained model, as aTLAS does; a small constant starts from a uniform task-arithmetic mix.
    /// </summary>
    public double InitialMean { get; set; }

    /// <summary>Bias of the log σ² head at initialisation (default −6, σ ≈ 0.05, the scale of the gate's base threshold).</summary>
    public double InitialLogVariance { get; set; } = -6;

    /// <summary>Inclusion probability the logit head's bias encodes at initialisation (default 0.5, the prior π0).</summary>
    public double InitialInclusionProbability { get; set; } = 0.5;

    /// <summary>Lower clamp of log σ² (default −8).</summary>
    public double MinLogVariance { get; set; } = -8;

    /// <summary>Upper clamp of log σ² (default 2).</summary>
    public double MaxLogVariance { get; set; } = 2;

    /// <summary>The heads <c>forward</c> computes (default all); <see cref="InferenceNetwork.Forward"/> chooses per call.</summary>
    public InferenceHeads Heads { get; set; } = InferenceHeads.All;

    /// <summary>Seed of the weight initialisation: the same seed gives the same network bit for bit.</summary>
    public long Seed { get; set; }

    internal void Validate()
    {
        if (HiddenWidth is { } width && width < 1)
            throw new ArgumentException($"InferenceNetworkOptions.HiddenWidth must be at least 1, found {width}.", nameof(HiddenWidth));
        if (HiddenWidth is null && TargetParameterCount < 1)
            throw new ArgumentException($"InferenceNetworkOptions.TargetParameterCount must be at least 1, found {TargetParameterCount}.", nameof(TargetParameterCount));
        if (!double.IsFinite(InitialMean))
            throw new ArgumentException($"InferenceNetworkOptions.InitialMean must be finite, found {InitialMean}.", nameof(InitialMean));
        if (!double.IsFinite(MinLogVariance) || !double.IsFinite(MaxLogVariance) || MinLogVariance > MaxLogVariance)
            throw new ArgumentException($"InferenceNetworkOptions.MinLogVariance ({MinLogVariance}) and MaxLogVariance ({MaxLogVariance}) must be finite with Min ≤ Max.", nameof(MinLogVariance));
        if (!double.IsFinite(InitialLogVariance))
            throw new ArgumentException($"InferenceNetworkOptions.InitialLogVariance must be finite, found {InitialLogVariance}.", nameof(InitialLogVariance));
        if (!(InitialInclusionProbability > 0 && InitialInclusionProbability < 1))
            throw new ArgumentException($"InferenceNetworkOptions.InitialInclusionProbability must lie strictly between 0 and 1, found {InitialInclusionProbability}.", nameof(InitialInclusionProbability));
        if ((Heads & ~InferenceHeads.All) != 0)
            throw new ArgumentException($"InferenceNetworkOptions.Heads has unknown flags: {Heads}.", nameof(Heads));
    }
}
