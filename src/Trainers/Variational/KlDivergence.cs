using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Microsoft.ML.TaskVectors.Trainers.Variational;

/// <summary>
/// Closed-form KL divergences of the variational family (paper appendix A.2, eqs. 24-26), element by element: each
/// returns a tensor of the inputs' shape, and the caller sums over coefficients and averages over samples.
/// </summary>
public static class KlDivergence
{
    /// <summary>
    /// KL(N(μ, σ²) ‖ N(0, σp²)) = ½·[log(σp²/σ²) + (σ² + μ²)/σp² − 1] (eq. 25).
    /// </summary>
    /// <param name="mean">μ.</param>
    /// <param name="logVariance">log σ², same shape as <paramref name="mean"/>.</param>
    /// <param name="priorStd">σp, the prior's standard deviation (positive).</param>
    public static Tensor Gaussian(Tensor mean, Tensor logVariance, double priorStd = 1)
    {
        CheckSameShape(mean, logVariance, nameof(logVariance));
        CheckPriorStd(priorStd);
        double priorLogVariance = 2 * Math.Log(priorStd), priorVariance = priorStd * priorStd;
        using var scope = NewDisposeScope();
        var kl = 0.5 * (priorLogVariance - logVariance + (logVariance.exp() + mean.square()) / priorVariance - 1);
        return kl.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// KL(Bernoulli(π) ‖ Bernoulli(π0)) = π·log(π/π0) + (1 − π)·log((1 − π)/(1 − π0)) (eq. 24), with 0·log 0 = 0 so
    /// hard (0/1) probabilities are allowed. Prefer <see cref="BernoulliFromLogits"/> when logits exist: it stays finite
    /// where a sigmoid would round to 0 or 1.
    /// </summary>
    /// <param name="probability">π in [0, 1].</param>
    /// <param name="prior">π0, strictly between 0 and 1.</param>
    public static Tensor Bernoulli(Tensor probability, double prior)
    {
        ArgumentNullException.ThrowIfNull(probability);
        CheckPrior(prior);
        using var scope = NewDisposeScope();
        var complement = 1 - probability;
        var kl = probability.xlogy(probability) - probability * Math.Log(prior)
            + complement.xlogy(complement) - complement * Math.Log(1 - prior);
        return kl.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// <see cref="Bernoulli"/> with π = sigmoid(<paramref name="logits"/>), using log π = log sigmoid(l) and
    /// log(1 − π) = log sigmoid(−l) so it is exact and finite for any logit.
    /// </summary>
    /// <param name="logits">Inclusion logits.</param>
    /// <param name="prior">π0, strictly between 0 and 1.</param>
    public static Tensor BernoulliFromLogits(Tensor logits, double prior)
    {
        ArgumentNullException.ThrowIfNull(logits);
        CheckPrior(prior);
        using var scope = NewDisposeScope();
        var p = logits.sigmoid();
        var kl = p * (F.logsigmoid(logits) - Math.Log(prior)) + (1 - p) * (F.logsigmoid(-logits) - Math.Log(1 - prior));
        return kl.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The spike-and-slab KL of eq. 26: KL(Bernoulli(π) ‖ Bernoulli(π0)) + π·KL(N(μ, σ²) ‖ N(0, σp²)), where
    /// π = sigmoid(<paramref name="inclusionLogits"/>). The spike carries no KL: a dropped coefficient is exactly 0 under
    /// both the posterior and the prior.
    /// </summary>
    /// <param name="inclusionLogits">Inclusion logits.</param>
    /// <param name="mean">μ, same shape.</param>
    /// <param name="logVariance">log σ², same shape.</param>
    /// <param name="priorInclusion">π0, strictly between 0 and 1.</param>
    /// <param name="priorStd">σp of the slab (positive).</param>
    public static Tensor SpikeAndSlab(Tensor inclusionLogits, Tensor mean, Tensor logVariance, double priorInclusion = 0.5, double priorStd = 1)
    {
        CheckSameShape(inclusionLogits, mean, nameof(mean));
        CheckSameShape(inclusionLogits, logVariance, nameof(logVariance));
        using var scope = NewDisposeScope();
        var kl = BernoulliFromLogits(inclusionLogits, priorInclusion) + inclusionLogits.sigmoid() * Gaussian(mean, logVariance, priorStd);
        return kl.MoveToOuterDisposeScope();
    }

    internal static void CheckPrior(double prior, string name = "prior")
    {
        if (!(prior > 0 && prior < 1))
            throw new ArgumentOutOfRangeException(name, prior, "The prior inclusion probability π0 must lie strictly between 0 and 1.");
    }

    internal static void CheckPriorStd(double priorStd, string name = "priorStd")
    {
        if (!(priorStd > 0) || !double.IsFinite(priorStd))
            throw new ArgumentOutOfRangeException(name, priorStd, "The prior standard deviation σp must be a finite positive number.");
    }

    private static void CheckSameShape(Tensor first, Tensor second, string name)
    {
        ArgumentNullException.ThrowIfNull(first);
        ArgumentNullException.ThrowIfNull(second);
        if (!first.shape.AsSpan().SequenceEqual(second.shape))
            throw new ArgumentException($"{name} must have shape [{string.Join(", ", first.shape)}], found [{string.Join(", ", second.shape)}].", name);
    }
}
