using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.Variational;

/// <summary>
/// The gate's regularisers (SPEC 2.3, paper appendix B), each a scalar tensor before weighting: per-coefficient terms are
/// summed over the N·M coefficients of a sample and averaged over the batch. <see cref="Total"/> is what the trainer
/// adds to the cross-entropy (eq. 12).
/// </summary>
/// <param name="Boundary">L_b = Σ max(0, m − ||z| − Γ|).</param>
/// <param name="Exploration">L_e = −log(|ψ1 − ψ1⁰| + ε) − log(|ψ2 − ψ2⁰| + ε) (one value per batch).</param>
/// <param name="Uncertainty">L_u = Σ U·Ω.</param>
/// <param name="InclusionKl">Σ KL(Bernoulli(Ω) ‖ Bernoulli(π0)).</param>
/// <param name="PriorNegativeLogDensity">Σ −log N(z̃; 0, σp²), constant included.</param>
/// <param name="Total">λ·(λb·L_b + λe·L_e + λu·L_u + λp·(KL + NLL)).</param>
public sealed record GateRegularisation(
    Tensor Boundary, Tensor Exploration, Tensor Uncertainty, Tensor InclusionKl, Tensor PriorNegativeLogDensity, Tensor Total) : IDisposable
{
    /// <summary>Every term as a number, by a stable name for logs: boundary, exploration, uncertainty, inclusion_kl, prior_nll, total.</summary>
    public IReadOnlyDictionary<string, double> Values() => new Dictionary<string, double>
    {
        ["boundary"] = Boundary.ToDouble(),
        ["exploration"] = Exploration.ToDouble(),
        ["uncertainty"] = Uncertainty.ToDouble(),
        ["inclusion_kl"] = InclusionKl.ToDouble(),
        ["prior_nll"] = PriorNegativeLogDensity.ToDouble(),
        ["total"] = Total.ToDouble(),
    };

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var t in new[] { Boundary, Exploration, Uncertainty, InclusionKl, PriorNegativeLogDensity, Total })
            t.Dispose();
    }
}
