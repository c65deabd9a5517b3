namespace Microsoft.ML.TaskVectors.Trainers.Variational;

/// <summary>
/// Options of an <see cref="UncertaintyGate"/>: every choice SPEC section 2.3 fixes, with its value as the default,
/// and the regularisers of the paper's appendix B.
/// </summary>
public sealed class UncertaintyGateOptions
{
    /// <summary>η in U = η·S + (1 − η)·V (default 0.5).</summary>
    public double Eta { get; set; } = 0.5;

    /// <summary>ψ1⁰, the base threshold at initialisation (default 0.05).</summary>
    public double InitialPsi1 { get; set; } = 0.05;

    /// <summary>ψ2⁰, the sensitivity to uncertainty at initialisation (default 1.0).</summary>
    public double InitialPsi2 { get; set; } = 1.0;

    /// <summary>
    /// κ in the training gate Ω = sigmoid(κ·(|z| − Γ)) (default 20). The paper's ρ = 20 divides, which would make the gate
    /// nearly constant at coefficient scales; SPEC multiplies.
    /// </summary>
    public double Sharpness { get; set; } = 20;

    /// <summary>Weight of the current batch in the running statistics, as in batch normalisation (default 0.1).</summary>
    public double Momentum { get; set; } = 0.1;

    /// <summary>ε = this × ‖x‖ per sample in the finite difference of S (default 1e-2).</summary>
    public double SensitivityStepScale { get; set; } = 1e-2;

    /// <summary>
    /// Whether training draws a fresh direction u for every batch (default true). Inference always uses the direction
    /// fixed at construction, so a sample is scored the same in any batch.
    /// </summary>
    public bool ResampleDirectionEachBatch { get; set; } = true;

    /// <summary>Added to the variance under the square root of V, as batch normalisation does (default 1e-5).</summary>
    public double VarianceEpsilon { get; set; } = 1e-5;

    /// <summary>Added to the running mean of S before dividing by it (default 1e-8).</summary>
    public double SensitivityEpsilon { get; set; } = 1e-8;

    /// <summary>
    /// A threshold multiplier per task (length N), for the asymmetric gate of task negation: a scale below 1 lowers the
    /// threshold of that task's coefficients so more of them pass. Null (the default) means 1 for every task.
    /// </summary>
    public IReadOnlyList<double>? TaskThresholdScales { get; set; }

    /// <summary>m, the width of the band around the threshold the boundary loss penalises (default 0.1).</summary>
    public double BoundaryMargin { get; set; } = 0.1;

    /// <summary>λb, weight of the boundary loss (default 1e-4).</summary>
    public double BoundaryWeight { get; set; } = 1e-4;

    /// <summary>λe, weight of the exploration loss (default 1e-3).</summary>
    public double ExplorationWeight { get; set; } = 1e-3;

    /// <summary>ε inside the exploration loss's logarithms (default 1e-5).</summary>
    public double ExplorationEpsilon { get; set; } = 1e-5;

    /// <summary>λu, weight of the uncertainty loss Σ U·Ω (default 1e-2).</summary>
    public double UncertaintyWeight { get; set; } = 1e-2;

    /// <summary>π0, the prior inclusion rate of the Bernoulli KL on Ω (default 0.5).</summary>
    public double PriorInclusion { get; set; } = 0.5;

    /// <summary>σp, the standard deviation of the Gaussian prior on z̃ (default 1).</summary>
    public double PriorStd { get; set; } = 1;

    /// <summary>
    /// Weight of the prior terms (Bernoulli KL of Ω and the Gaussian negative log-density of z̃) inside L_reg
    /// (default 1, so they sit with the other regularisers under the global λ).
    /// </summary>
    public double PriorWeight { get; set; } = 1;

    /// <summary>λ, the global weight of L_reg in eq. 12: loss = cross-entropy + λ·L_reg (default 1e-3).</summary>
    public double GlobalWeight { get; set; } = 1e-3;

    /// <summary>Seed of the fixed inference direction and of the per-batch training directions.</summary>
    public long Seed { get; set; }

    internal void Validate(long tasks)
    {
        static void Check(bool ok, string name, double value, string expected)
        {
            if (!ok) throw new ArgumentException($"UncertaintyGateOptions.{name} must be {expected}, found {value}.", name);
        }
        static bool NonNegative(double v) => double.IsFinite(v) && v >= 0;
        static bool Positive(double v) => double.IsFinite(v) && v > 0;
        Check(Eta is >= 0 and <= 1, nameof(Eta), Eta, "between 0 and 1");
        Check(Positive(InitialPsi1), nameof(InitialPsi1), InitialPsi1, "finite and positive (ψ1 = exp(log ψ1))");
        Check(Positive(InitialPsi2), nameof(InitialPsi2), InitialPsi2, "finite and positive (ψ2 = exp(log ψ2))");
        Check(Positive(Sharpness), nameof(Sharpness), Sharpness, "finite and positive");
        Check(Momentum is > 0 and <= 1, nameof(Momentum), Momentum, "in (0, 1]");
        Check(Positive(SensitivityStepScale), nameof(SensitivityStepScale), SensitivityStepScale, "finite and positive");
        Check(Positive(VarianceEpsilon), nameof(VarianceEpsilon), VarianceEpsilon, "finite and positive");
        Check(Positive(SensitivityEpsilon), nameof(SensitivityEpsilon), SensitivityEpsilon, "finite and positive");
        Check(NonNegative(BoundaryMargin), nameof(BoundaryMargin), BoundaryMargin, "finite and non-negative");
        Check(NonNegative(BoundaryWeight), nameof(BoundaryWeight), BoundaryWeight, "finite and non-negative");
        Check(NonNegative(ExplorationWeight), nameof(ExplorationWeight), ExplorationWeight, "finite and non-negative");
        Check(Positive(ExplorationEpsilon), nameof(ExplorationEpsilon), ExplorationEpsilon, "finite and positive");
        Check(NonNegative(UncertaintyWeight), nameof(UncertaintyWeight), UncertaintyWeight, "finite and non-negative");
        Check(PriorInclusion is > 0 and < 1, nameof(PriorInclusion), PriorInclusion, "strictly between 0 and 1");
        Check(Positive(PriorStd), nameof(PriorStd), PriorStd, "finite and positive");
        Check(NonNegative(PriorWeight), nameof(PriorWeight), PriorWeight, "finite and non-negative");
        Check(NonNegative(GlobalWeight), nameof(GlobalWeight), GlobalWeight, "finite and non-negative");
        if (TaskThresholdScales is { } scales)
        {
            if (scales.Count != tasks)
                throw new ArgumentException($"UncertaintyGateOptions.TaskThresholdScales must have one scale per task ({tasks}), found {scales.Count}.", nameof(TaskThresholdScales));
            for (int t = 0; t < scales.Count; t++)
                Check(Positive(scales[t]), $"{nameof(TaskThresholdScales)}[{t}]", scales[t], "finite and positive");
        }
    }
}
