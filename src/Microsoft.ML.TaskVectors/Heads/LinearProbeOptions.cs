using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Heads;

/// <summary>
/// Options of a linear probe (<see cref="LinearHead.Fit(Tensor, Tensor, IReadOnlyList{string}, LinearProbeOptions?, IProgress{double}?, CancellationToken)"/>):
/// multinomial logistic regression on frozen features, minimising mean cross-entropy + (L2 / 2)·‖W‖² (the bias is not
/// penalised) with full-batch L-BFGS from zero weights.
/// </summary>
/// <remarks>
/// Features are used raw, not normalised, so the head reads the same unnormalised embeddings as every other head and
/// exports to ONNX as a plain linear layer. The fit centres and rescales the features internally for conditioning and
/// folds that back into the weights and bias, which is an exact change of variables: the minimiser is that of the raw
/// problem. The fit has no randomness (zero start, full batch), so the same inputs always give the same head.
/// </remarks>
public sealed class LinearProbeOptions
{
    /// <summary>The default L2 strength relative to the mean squared feature value.</summary>
    public const double DefaultRelativeL2 = 1e-4;

    /// <summary>
    /// L2 penalty strength λ in mean CE + (λ/2)·‖W‖². When null (the default), 1e-4 × the mean squared feature value,
    /// which makes the fit independent of the features' overall scale.
    /// </summary>
    public double? L2 { get; set; }

    /// <summary>Maximum L-BFGS iterations (default 1000).</summary>
    public int MaxIterations { get; set; } = 1000;

    /// <summary>
    /// Stop when every entry of the objective's gradient (with respect to the internally standardised parameters) is at
    /// most this in magnitude (default 1e-6).
    /// </summary>
    public double GradientTolerance { get; set; } = 1e-6;

    /// <summary>Correction pairs L-BFGS remembers (default 10).</summary>
    public int HistorySize { get; set; } = 10;

    /// <summary>Whether the head has a bias (default true).</summary>
    public bool FitBias { get; set; } = true;

    /// <summary>Where the fit computes and the head lives; the features' device when null.</summary>
    public Device? Device { get; set; }

    internal void Validate()
    {
        if (L2 is { } l2 && (!double.IsFinite(l2) || l2 < 0))
            throw new ArgumentException($"LinearProbeOptions.L2 must be a finite non-negative number, found {l2}.", nameof(L2));
        if (MaxIterations < 1)
            throw new ArgumentException($"LinearProbeOptions.MaxIterations must be at least 1, found {MaxIterations}.", nameof(MaxIterations));
        if (!double.IsFinite(GradientTolerance) || GradientTolerance < 0)
            throw new ArgumentException($"LinearProbeOptions.GradientTolerance must be a finite non-negative number, found {GradientTolerance}.", nameof(GradientTolerance));
        if (HistorySize < 1)
            throw new ArgumentException($"LinearProbeOptions.HistorySize must be at least 1, found {HistorySize}.", nameof(HistorySize));
    }
}
