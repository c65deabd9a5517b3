using Microsoft.ML.TaskVectors.Trainers.Composition;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Trainers.Composition;

public class AdaMergingTrainerTests
{
    [Test]
    public void EntropyOfUniformAndCertainPredictions()
    {
        using var scope = NewDisposeScope();
        var logits = tensor(new float[,] { { 0, 0 }, { 100, 0 } });
        Assert.That(AdaMergingTrainer.EntropySum(logits, zeros(2, dtype: int64)).item<float>(), Is.EqualTo(Math.Log(2)).Within(1e-5));
    }

    [TestCase(AdaMergingGranularity.TaskWise)]
    [TestCase(AdaMergingGranularity.LayerWise)]
    public void LowersTheEntropyAndKeepsCoefficientsInTheUnitInterval(AdaMergingGranularity granularity)
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite();
        var options = new AdaMergingOptions { Granularity = granularity, Steps = 30, LearningRate = 0.05, BatchSize = 16, Seed = 1 };
        var (z, entropies) = new AdaMergingTrainer(options).Fit(suite.Engine, suite.Tasks);
        Assert.That(entropies.TakeLast(5).Average(), Is.LessThan(entropies.Take(5).Average()));
        Assert.That(z.min().item<float>(), Is.GreaterThanOrEqualTo(0f));
        Assert.That(z.max().item<float>(), Is.LessThanOrEqualTo(1f));
        Assert.That(z.shape, Is.EqualTo(new long[] { 2, suite.Engine.BlockCount }));
        bool sharedAcrossBlocks = z.eq(z[.., ..1]).all().item<bool>();
        Assert.That(sharedAcrossBlocks, Is.EqualTo(granularity == AdaMergingGranularity.TaskWise));
        Assert.That(new AdaMergingTrainer(options).Fit(suite.Engine, suite.Tasks).Coefficients.eq(z).all().item<bool>(), Is.True, "deterministic");
        var before = CompositionEvaluator.Accuracy(suite.Engine, suite.Tasks, t => t.Selection, null).Average();
        var after = CompositionEvaluator.Accuracy(suite.Engine, suite.Tasks, t => t.Selection, _ => z).Average();
        Assert.That(after, Is.GreaterThan(before), "beats the pre-trained model");
    }

    [Test]
    public void ResumingFromACheckpointEqualsAnUninterruptedRun()
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite();
        using var dir = new TempDirectory();
        var options = new AdaMergingOptions { Granularity = AdaMergingGranularity.LayerWise, Steps = 12, LearningRate = 0.05, BatchSize = 16, Seed = 3, CheckpointEvery = 4 };
        var (straight, _) = new AdaMergingTrainer(options).Fit(suite.Engine, suite.Tasks);
        new AdaMergingTrainer(options with { Steps = 8, CheckpointDirectory = dir.Path }).Fit(suite.Engine, suite.Tasks);
        var (resumed, entropies) = new AdaMergingTrainer(options with { CheckpointDirectory = dir.Path }).Fit(suite.Engine, suite.Tasks);
        Assert.That(entropies, Has.Count.EqualTo(12), "the first 8 entropies come from the checkpoint");
        Assert.That(resumed.eq(straight).all().item<bool>(), Is.True);
        var e = Assert.Throws<InvalidOperationException>(() => new AdaMergingTrainer(options with { LearningRate = 0.01, CheckpointDirectory = dir.Path }).Fit(suite.Engine, suite.Tasks))!;
        Assert.That(e.Message, Does.Contain(dir.Path));
    }
}
