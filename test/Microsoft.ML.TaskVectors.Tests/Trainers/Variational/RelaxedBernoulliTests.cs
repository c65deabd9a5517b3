using Microsoft.ML.TaskVectors.Trainers.Variational;
using static Microsoft.ML.TaskVectors.Tests.Trainers.Variational.VariationalTestHelpers;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Trainers.Variational;

public class RelaxedBernoulliTests
{
    private static readonly double[] Logits = [-2, -0.5, 0.3, 1.5];

    [Test]
    public void SampleMean_TendsToPiAsTheTemperatureFallsToZero()
    {
        using var scope = NewDisposeScope();
        const int samples = 40_000;
        var logits = tensor(Logits).unsqueeze(0).expand(samples, -1);
        // The same noise at every temperature: the samples move towards the hard draws 1[logit + L > 0].
        var noise = RelaxedBernoulli.LogisticNoise([samples, Logits.Length], new Generator(17), ScalarType.Float64);
        var hardMean = Values(logits.add(noise).gt(0).to(ScalarType.Float64).mean([0]));
        var pi = Logits.Select(Sigmoid).ToArray();

        double[] MeanAt(double temperature) => Values(RelaxedBernoulli.Sample(logits, temperature, noise).mean([0]));
        double MaxGap(double[] a, double[] b) => a.Zip(b, (x, y) => Math.Abs(x - y)).Max();
        var gaps = new[] { 1.0, 0.3, 0.1, 0.01 }.Select(t => MaxGap(MeanAt(t), hardMean)).ToArray();
        for (int i = 1; i < gaps.Length; i++) Assert.That(gaps[i], Is.LessThan(gaps[i - 1]), $"temperature step {i}");
        Assert.That(gaps[^1], Is.LessThan(1e-3));
        // The hard draws are Bernoulli(π): within 4 standard errors (√(0.25/40000) = 0.0025) of π.
        Assert.That(MaxGap(MeanAt(0.01), pi), Is.LessThan(0.011));
        // At τ = 1 the relaxed mean is visibly pulled towards 1/2.
        Assert.That(MaxGap(MeanAt(1), pi), Is.GreaterThan(0.03));
    }

    [Test]
    public void Gradient_ReachesTheLogitsAndMatchesFiniteDifferencesWithFixedNoise()
    {
        using var scope = NewDisposeScope();
        var noise = RelaxedBernoulli.LogisticNoise([300, 4], new Generator(5), ScalarType.Float64);
        var weights = tensor(new[] { 1.0, -2.0, 0.5, 3.0 });
        double Expectation(Tensor l) => Scalar((RelaxedBernoulli.Sample(l.unsqueeze(0).expand(300, -1), 0.7, noise) * weights).sum(dim: 1).mean());

        var logits = tensor(Logits, requires_grad: true);
        (RelaxedBernoulli.Sample(logits.unsqueeze(0).expand(300, -1), 0.7, noise) * weights).sum(dim: 1).mean().backward();
        var gradient = Values(logits.grad!);
        const double h = 1e-6;
        for (int k = 0; k < Logits.Length; k++)
        {
            var plus = (double[])Logits.Clone();
            var minus = (double[])Logits.Clone();
            plus[k] += h;
            minus[k] -= h;
            double numeric = (Expectation(tensor(plus)) - Expectation(tensor(minus))) / (2 * h);
            Assert.That(gradient[k], Is.EqualTo(numeric).Within(1e-7), $"logit {k}");
            Assert.That(Math.Abs(gradient[k]), Is.GreaterThan(0.01), $"logit {k}");
        }
    }

    [Test]
    public void Sample_IsRepeatableFromASeed()
    {
        using var scope = NewDisposeScope();
        var logits = zeros(3, 5);
        var a = RelaxedBernoulli.Sample(logits, 0.5, new Generator(8));
        var b = RelaxedBernoulli.Sample(logits, 0.5, new Generator(8));
        var c = RelaxedBernoulli.Sample(logits, 0.5, new Generator(9));
        Assert.That(a.eq(b).all().item<bool>(), Is.True);
        Assert.That(a.eq(c).all().item<bool>(), Is.False);
        Assert.That(Values(a), Is.All.InRange(0.0, 1.0));
    }

    [Test]
    public void Hard_IsOneExactlyWhenPiIsAtLeastOneHalf()
    {
        using var scope = NewDisposeScope();
        Assert.That(Values(RelaxedBernoulli.Hard(tensor(new[] { -1f, -1e-7f, 0f, 2f }))), Is.EqualTo(new[] { 0.0, 0, 1, 1 }));
    }

    [Test]
    public void Schedule_AnnealsFromInitialToFinalAndHolds()
    {
        var exponential = new TemperatureSchedule(1, 0.25);
        Assert.That(new[] { 0L, 1, 2, 10 }.Select(s => exponential.At(s, 3)), Is.EqualTo(new[] { 1, 0.5, 0.25, 0.25 }).Within(1e-12));
        var linear = exponential with { Kind = TemperatureAnnealing.Linear };
        Assert.That(new[] { 0L, 1, 2 }.Select(s => linear.At(s, 3)), Is.EqualTo(new[] { 1, 0.625, 0.25 }).Within(1e-12));
        Assert.That((exponential with { Kind = TemperatureAnnealing.Constant }).At(5, 10), Is.EqualTo(1));
        Assert.That(exponential.At(0, 1), Is.EqualTo(0.25));
        Assert.That(new TemperatureSchedule().At(99, 100), Is.EqualTo(0.5).Within(1e-12));
    }

    [Test]
    public void BadArguments_AreRejectedByName()
    {
        using var scope = NewDisposeScope();
        Assert.That(Assert.Throws<ArgumentException>(() => new TemperatureSchedule(0, 0.5).At(0, 3))!.Message, Does.Contain("Initial"));
        Assert.That(Assert.Throws<ArgumentException>(() => new TemperatureSchedule(1, double.NaN).At(0, 3))!.Message, Does.Contain("Final"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TemperatureSchedule().At(-1, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TemperatureSchedule().At(0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => RelaxedBernoulli.Sample(zeros(2), 0));
        Assert.That(Assert.Throws<ArgumentException>(() => RelaxedBernoulli.Sample(zeros(2), 1, zeros(3)))!.Message, Does.Contain("[2]"));
    }
}
