namespace Microsoft.ML.TaskVectors.Trainers.Variational;

/// <summary>Which output heads an <see cref="InferenceNetwork"/> computes (every head always exists).</summary>
[Flags]
public enum InferenceHeads
{
    /// <summary>No head: only validates the input.</summary>
    None = 0,

    /// <summary>The posterior mean μ(x) (every variant).</summary>
    Mean = 1,

    /// <summary>The posterior log-variance log σ²(x), clamped (the probabilistic variants).</summary>
    LogVariance = 2,

    /// <summary>The inclusion logits, π(x) = sigmoid(logit) (the spike-and-slab variant).</summary>
    InclusionLogits = 4,

    /// <summary>Every head.</summary>
    All = Mean | LogVariance | InclusionLogits,
}
