using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.Variational;

/// <summary>What an <see cref="UncertaintyGate"/> computes for coefficients z [B, N, M]; every tensor is [B, N, M].</summary>
/// <param name="Coefficients">z, the input coefficients (an alias, not a copy).</param>
/// <param name="Gate">Ω: sigmoid(κ·(|z| − Γ)) in training, 1[|z| ≥ Γ] at inference.</param>
/// <param name="Gated">z̃ = Ω·z, the coefficients composition uses.</param>
/// <param name="Sensitivity">S divided by its running mean per coefficient (zero when no mean function was given).</param>
/// <param name="Deviation">V = |z − μ| / σ with batch statistics in training and running statistics at inference.</param>
/// <param name="Uncertainty">U = η·S + (1 − η)·V.</param>
/// <param name="Threshold">Γ = scale_t·ψ1·(1 + ψ2·U), scale_t the task's threshold scale.</param>
/// <param name="GateLogits">κ·(|z| − Γ), the soft gate's logit (also computed at inference).</param>
/// <param name="IsHard">Whether <paramref name="Gate"/> is the hard (inference) gate.</param>
public sealed record GateOutput(
    Tensor Coefficients, Tensor Gate, Tensor Gated, Tensor Sensitivity, Tensor Deviation, Tensor Uncertainty,
    Tensor Threshold, Tensor GateLogits, bool IsHard) : IDisposable
{
    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var t in new[] { Coefficients, Gate, Gated, Sensitivity, Deviation, Uncertainty, Threshold, GateLogits })
            t.Dispose();
    }
}
