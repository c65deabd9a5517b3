using Microsoft.ML.TaskVectors.Trainers.Variational;

namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>Options of <see cref="TaskNegationTrainer"/>: aTLAS's optimiser settings plus the negation's own.</summary>
public sealed record TaskNegationOptions : CompositionTrainerOptions
{
    /// <summary>
    /// The target task's threshold scales to try (the asymmetric gate): each is one training run, and the selection rule
    /// chooses among every epoch of every run. A scale below 1 lowers the target's threshold so its (negative)
    /// coefficients pass the gate more easily than the controls'. Default: one run at 0.5.
    /// </summary>
    public IReadOnlyList<double> TargetThresholdScales { get; init; } = [0.5];

    /// <summary>Weight of the target term −CE(target) against the control term CE(control) (default 1).</summary>
    public double TargetWeight { get; init; } = 1.0;

    /// <summary>
    /// Each target sample's cross-entropy is clamped at this many nats before it is negated, so the loss is bounded
    /// below and a sample already confidently misclassified stops pulling the coefficients further. Null (the default)
    /// means 2·ln K for the target's K classes: twice the cross-entropy of a uniform prediction.
    /// </summary>
    public double? MaxTargetLoss { get; init; }

    /// <summary>The selection constraint: control accuracy ≥ this × the pre-trained model's control accuracy (default 0.95).</summary>
    public double MinControlRatio { get; init; } = 0.95;

    /// <summary>
    /// The gate's options. Its <see cref="UncertaintyGateOptions.TaskThresholdScales"/> (1 for every task when null) give
    /// the controls' scales; the target's entry is replaced by each of <see cref="TargetThresholdScales"/>. Default: SPEC 2.3's
    /// gate with η = 1. Task-level coefficients carry no uncertainty: S = 0 (z does not depend on the input) and V = 0 in
    /// training (every sample of a batch shares z), while at test V = |z − running mean| / √(running variance + ε) with a
    /// running variance of 0 would blow up whenever z moved in the last few steps and close every gate. With η = 1,
    /// U = S = 0 in both modes, so the gate is the plain threshold |z| ≥ scale·ψ1 and training and test agree.
    /// </summary>
    public UncertaintyGateOptions Gate { get; init; } = new() { Eta = 1 };

    internal void ValidateNegation(int tasks)
    {
        Validate(tasks);
        if (TargetThresholdScales is not { Count: > 0 } || TargetThresholdScales.Any(s => !double.IsFinite(s) || s <= 0))
            throw new ArgumentOutOfRangeException(nameof(TargetThresholdScales), $"TargetThresholdScales must hold at least one finite positive scale, found [{string.Join(", ", TargetThresholdScales ?? [])}].");
        if (!double.IsFinite(TargetWeight) || TargetWeight <= 0)
            throw new ArgumentOutOfRangeException(nameof(TargetWeight), TargetWeight, "TargetWeight must be finite and positive.");
        if (MaxTargetLoss is double cap && (!double.IsFinite(cap) || cap <= 0))
            throw new ArgumentOutOfRangeException(nameof(MaxTargetLoss), cap, "MaxTargetLoss must be finite and positive (nats), or null for 2·ln K.");
        if (!(MinControlRatio is >= 0 and <= 1))
            throw new ArgumentOutOfRangeException(nameof(MinControlRatio), MinControlRatio, "MinControlRatio must be in [0, 1].");
    }
}
