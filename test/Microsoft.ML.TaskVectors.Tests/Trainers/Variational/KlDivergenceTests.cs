using Microsoft.ML.TaskVectors.Trainers.Variational;
using static Microsoft.ML.TaskVectors.Tests.Trainers.Variational.VariationalTestHelpers;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Trainers.Variational;

public class KlDivergenceTests
{
    [Test]
    public void Gaussian_MatchesHandComputedValues()
    {
        using var scope = NewDisposeScope();
        var mean = tensor(new[] { 0.5, 0, -1 });
        var logVariance = tensor(new[] { Math.Log(0.25), 2 * Math.Log(2), 0 });
        // ½[ln(4/0.25) + (0.25 + 0.25)/4 − 1] = ½[2.7725887 − 0.875];  σ = σp, μ = 0 → 0;  σp = 2: ½[ln 4 + 2/4 − 1].
        var expected = new[] { 0.5 * (Math.Log(16) + 0.125 - 1), 0, 0.5 * (Math.Log(4) + 0.5 - 1) };
        Assert.That(Values(KlDivergence.Gaussian(mean, logVariance, priorStd: 2)), Is.EqualTo(expected).Within(1e-12));
        Assert.That(expected[0], Is.EqualTo(0.948794361).Within(1e-9));
        // σp = 1, μ = −1, σ = 1: ½[0 + 2 − 1] = 0.5.
        Assert.That(Scalar(KlDivergence.Gaussian(tensor(-1.0), tensor(0.0))), Is.EqualTo(0.5).Within(1e-12));
    }

    [Test]
    public void Gaussian_GradientsMatchTheirClosedForms()
    {
        using var scope = NewDisposeScope();
        var mean = tensor(new[] { 0.3, -0.7 }, requires_grad: true);
        var logVariance = tensor(new[] { -1.0, 0.5 }, requires_grad: true);
        KlDivergence.Gaussian(mean, logVariance, priorStd: 1.5).sum().backward();
        // ∂/∂μ = μ/σp²;  ∂/∂log σ² = ½(σ²/σp² − 1).
        Assert.That(Values(mean.grad!), Is.EqualTo(new[] { 0.3 / 2.25, -0.7 / 2.25 }).Within(1e-12));
        Assert.That(Values(logVariance.grad!), Is.EqualTo(new[] { 0.5 * (Math.Exp(-1) / 2.25 - 1), 0.5 * (Math.Exp(0.5) / 2.25 - 1) }).Within(1e-12));
    }

    [Test]
    public void Bernoulli_MatchesHandComputedValuesIncludingHardProbabilities()
    {
        using var scope = NewDisposeScope();
        // 0.8 ln 1.6 + 0.2 ln 0.4 = 0.3760029 − 0.1832581 = 0.1927448;  π = π0 → 0.
        Assert.That(Values(KlDivergence.Bernoulli(tensor(new[] { 0.8, 0.5 }), 0.5)), Is.EqualTo(new[] { 0.192744757, 0 }).Within(1e-8));
        // 0.1 ln(0.1/0.3) + 0.9 ln(0.9/0.7) = −0.1098612 + 0.2261830 = 0.1163218;  0·ln 0 = 0: π = 0 → −ln 0.7, π = 1 → −ln 0.3.
        Assert.That(Values(KlDivergence.Bernoulli(tensor(new[] { 0.1, 0, 1 }), 0.3)),
            Is.EqualTo(new[] { 0.116321757, -Math.Log(0.7), -Math.Log(0.3) }).Within(1e-8));
    }

    [Test]
    public void BernoulliFromLogits_EqualsTheProbabilityFormAndStaysFiniteAtExtremes()
    {
        using var scope = NewDisposeScope();
        var logits = tensor(new[] { -3.0, -0.2, 0, 1.7 });
        Assert.That(Values(KlDivergence.BernoulliFromLogits(logits, 0.3)), Is.EqualTo(Values(KlDivergence.Bernoulli(logits.sigmoid(), 0.3))).Within(1e-12));

        // In float32 sigmoid(±40) rounds to exactly 1 or 0; the logit form still gives the limits −ln π0 and −ln(1 − π0).
        var extreme = tensor(new[] { 40f, -40f }, requires_grad: true);
        var kl = KlDivergence.BernoulliFromLogits(extreme, 0.25);
        Assert.That(Values(kl), Is.EqualTo(new[] { -Math.Log(0.25), -Math.Log(0.75) }).Within(1e-5));
        kl.sum().backward();
        Assert.That(extreme.grad!.isfinite().all().item<bool>(), Is.True);
    }

    [Test]
    public void SpikeAndSlab_IsBernoulliKlPlusInclusionWeightedGaussianKl()
    {
        using var scope = NewDisposeScope();
        // π = 0.8 (logit ln 4), μ = 0.5, σ² = 0.25, σp = 2, π0 = 0.5: 0.1927448 + 0.8 · 0.9487944 = 0.9517803.
        var kl = KlDivergence.SpikeAndSlab(tensor(Math.Log(4)), tensor(0.5), tensor(Math.Log(0.25)), priorInclusion: 0.5, priorStd: 2);
        Assert.That(Scalar(kl), Is.EqualTo(0.8 * Math.Log(1.6) + 0.2 * Math.Log(0.4) + 0.8 * 0.5 * (Math.Log(16) - 0.875)).Within(1e-12));
        Assert.That(Scalar(kl), Is.EqualTo(0.9517803).Within(1e-6));
    }

    [Test]
    public void ClosedForms_AgreeWithMonteCarloEstimates()
    {
        using var scope = NewDisposeScope();
        const int samples = 400_000;
        var generator = new Generator(2024);
        double mu = 0.4, sigma = 0.6, priorStd = 1.3, pi = 0.7, prior = 0.4;

        // Gaussian: E_q[log q(z) − log p(z)].
        var z = mu + sigma * randn(samples, dtype: ScalarType.Float64, generator: generator);
        var logQ = -0.5 * ((z - mu) / sigma).square() - Math.Log(sigma);
        var logP = -0.5 * (z / priorStd).square() - Math.Log(priorStd);
        double gaussianMc = Scalar((logQ - logP).mean());
        double gaussian = Scalar(KlDivergence.Gaussian(tensor(mu), tensor(2 * Math.Log(sigma)), priorStd));
        Assert.That(gaussianMc, Is.EqualTo(gaussian).Within(0.01));

        // Bernoulli: E_q[log q(ω) − log p(ω)].
        var omega = rand(samples, dtype: ScalarType.Float64, generator: generator).lt(pi).to(ScalarType.Float64);
        var logRatio = omega * Math.Log(pi / prior) + (1 - omega) * Math.Log((1 - pi) / (1 - prior));
        double bernoulliMc = Scalar(logRatio.mean());
        double bernoulli = Scalar(KlDivergence.Bernoulli(tensor(pi), prior));
        Assert.That(bernoulliMc, Is.EqualTo(bernoulli).Within(0.01));

        // Spike and slab, sampled jointly: a dropped coefficient is 0 under both q and p and adds nothing.
        double joint = Scalar((logRatio + omega * (logQ - logP)).mean());
        double closed = Scalar(KlDivergence.SpikeAndSlab(tensor(Math.Log(pi / (1 - pi))), tensor(mu), tensor(2 * Math.Log(sigma)), prior, priorStd));
        Assert.That(joint, Is.EqualTo(closed).Within(0.015));
        Assert.That(closed, Is.EqualTo(bernoulli + pi * gaussian).Within(1e-12));
    }

    [Test]
    public void BadArguments_AreRejected()
    {
        using var scope = NewDisposeScope();
        Assert.Throws<ArgumentOutOfRangeException>(() => KlDivergence.Bernoulli(tensor(0.5), 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => KlDivergence.BernoulliFromLogits(tensor(0.5), 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => KlDivergence.Gaussian(tensor(0.5), tensor(0.0), priorStd: 0));
        Assert.That(Assert.Throws<ArgumentException>(() => KlDivergence.Gaussian(zeros(3), zeros(2)))!.Message, Does.Contain("logVariance").And.Contain("[3]"));
        Assert.That(Assert.Throws<ArgumentException>(() => KlDivergence.SpikeAndSlab(zeros(2), zeros(2), zeros(3)))!.Message, Does.Contain("logVariance"));
    }
}
