using Microsoft.ML.TaskVectors.Trainers.Composition;
using Microsoft.ML.TaskVectors.Trainers.Variational;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Trainers.Composition;

public class SampleSpecificTrainerTests
{
    private static SampleSpecificOptions Options(SampleSpecificVariant variant) => new()
    {
        Variant = variant, Epochs = 6, BatchSize = 16, LearningRate = 0.01, WeightDecay = 0, Seed = 5,
        Network = new InferenceNetworkOptions { HiddenWidth = 32, Seed = 2 },
        Gate = new UncertaintyGateOptions { InitialPsi1 = 0.01 },
    };

    [TestCase(SampleSpecificVariant.Deterministic)]
    [TestCase(SampleSpecificVariant.Gaussian)]
    [TestCase(SampleSpecificVariant.SpikeAndSlab)]
    [TestCase(SampleSpecificVariant.Gated)]
    public void LowersItsLossAndBeatsThePretrainedModel(SampleSpecificVariant variant)
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite();
        var before = CompositionEvaluator.Accuracy(suite.Engine, suite.Tasks, t => t.Selection, null);
        using var trained = new SampleSpecificTrainer(Options(variant)).Fit(suite.Engine, suite.Tasks);
        var after = CompositionEvaluator.Accuracy(suite.Engine, suite.Tasks, t => t.Selection,
            x => trained.Infer(suite.Engine.ForwardBase(x).ImageEmbeds).Coefficients);
        Assert.That(trained.EpochLosses[^1], Is.LessThan(trained.EpochLosses[0]), string.Join(", ", trained.EpochLosses));
        Assert.That(after.Average(), Is.GreaterThan(before.Average()), $"before {string.Join(", ", before)}; after {string.Join(", ", after)}");

        var features = suite.Engine.ForwardBase(randn(3, 3, 16, 16, generator: new Generator(9))).ImageEmbeds;
        var (z, gates) = trained.Infer(features);
        Assert.That(z.shape, Is.EqualTo(new long[] { 3, 2, suite.Engine.BlockCount }));
        Assert.That(gates.eq(0).logical_or(gates.eq(1)).all().item<bool>(), Is.True, "test-time gates are hard");
        Assert.That(z.eq(0).logical_or(gates.eq(1)).all().item<bool>(), Is.True, "a closed gate zeroes its coefficient");
    }

    [Test]
    public void GatedMethodScoresASampleAloneAsInsideABatchAndRepeatsWithTheSeed()
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite();
        var options = Options(SampleSpecificVariant.Gated) with { Epochs = 2 };
        using var a = new SampleSpecificTrainer(options).Fit(suite.Engine, suite.Tasks);
        using var b = new SampleSpecificTrainer(options).Fit(suite.Engine, suite.Tasks);
        var features = suite.Engine.ForwardBase(randn(4, 3, 16, 16, generator: new Generator(10))).ImageEmbeds;
        var (za, ga) = a.Infer(features);
        Assert.That(b.Infer(features).Coefficients.eq(za).all().item<bool>(), Is.True);
        var (z1, g1) = a.Infer(features[2..3]);
        Assert.That(g1.eq(ga[2..3]).all().item<bool>(), Is.True);
        Assert.That(z1.allclose(za[2..3], atol: 1e-6), Is.True);
    }
}
