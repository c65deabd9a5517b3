using Microsoft.ML.TaskVectors.Runtime;
using Microsoft.ML.TaskVectors.Trainers.Composition;
using Microsoft.ML.TaskVectors.Trainers.Variational;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Trainers.Composition;

public class ResumeTests
{
    private static readonly CompositionTrainerOptions Atlas = new() { Epochs = 4, BatchSize = 16, LearningRate = 0.05, WeightDecay = 0.01, Seed = 3 };

    private static SampleSpecificOptions Vtvc(string? directory = null) => new()
    {
        Variant = SampleSpecificVariant.Gated, Epochs = 4, BatchSize = 16, LearningRate = 0.01, WeightDecay = 0.01, Seed = 5,
        Network = new InferenceNetworkOptions { HiddenWidth = 32, Seed = 2 },
        Gate = new UncertaintyGateOptions { InitialPsi1 = 0.01 },
        CheckpointDirectory = directory,
    };

    [Test]
    public void ResumingAtlasEqualsAnUninterruptedRun()
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite();
        using var dir = new TempDirectory();
        // Without selection splits the last epoch is kept, so two epochs and four give different coefficients.
        var tasks = suite.Tasks.Select(t => t with { Selection = null }).ToList();
        var straight = new AtlasTrainer(Atlas).Fit(suite.Engine, tasks);

        var first = new AtlasTrainer(Atlas with { Epochs = 2, CheckpointDirectory = dir.Path }).Fit(suite.Engine, tasks);
        Assert.That(File.Exists(Path.Combine(dir.Path, TrainingCheckpoint.FileName)), Is.True);
        var epochs = new List<int>();
        var resumed = new AtlasTrainer(Atlas with { CheckpointDirectory = dir.Path })
            .Fit(suite.Engine, tasks, new SynchronousProgress<CompositionProgress>(p => epochs.Add(p.Epoch)));

        Assert.That(epochs.Distinct(), Is.EqualTo(new[] { 3, 4 }), "the resumed run trains only the missing epochs");
        Assert.That(first.Coefficients.eq(straight.Coefficients).all().item<bool>(), Is.False, "two epochs differ from four");
        Assert.That(resumed.Coefficients.eq(straight.Coefficients).all().item<bool>(), Is.True);
        Assert.That(resumed.EpochLosses, Is.EqualTo(straight.EpochLosses));
        Assert.That(resumed.BestEpoch, Is.EqualTo(4));
    }

    [Test]
    public void ResumingVtvcAfterACancelEqualsAnUninterruptedRun()
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite();
        using var dir = new TempDirectory();
        using var straight = new SampleSpecificTrainer(Vtvc()).Fit(suite.Engine, suite.Tasks);

        // Cancel in the middle of epoch 3: the checkpoint of epoch 2 is on disk, epoch 3's first step is not.
        using var cancel = new CancellationTokenSource();
        var interrupted = new SynchronousProgress<CompositionProgress>(p => { if (p.Epoch == 3) cancel.Cancel(); });
        Assert.Throws<OperationCanceledException>(() => new SampleSpecificTrainer(Vtvc(dir.Path)).Fit(suite.Engine, suite.Tasks, interrupted, cancel.Token));

        var epochs = new List<int>();
        using var resumed = new SampleSpecificTrainer(Vtvc(dir.Path)).Fit(suite.Engine, suite.Tasks, new SynchronousProgress<CompositionProgress>(p => epochs.Add(p.Epoch)));
        Assert.That(epochs.Min(), Is.EqualTo(3));
        Assert.That(resumed.EpochLosses, Is.EqualTo(straight.EpochLosses));
        Assert.That(resumed.BestEpoch, Is.EqualTo(straight.BestEpoch));
        var expected = straight.StateTensors();
        foreach (var (name, tensor) in resumed.StateTensors())
            Assert.That(tensor.eq(expected[name]).all().item<bool>(), Is.True, name);
        var features = suite.Engine.ForwardBase(randn(4, 3, 16, 16, generator: new Generator(10))).ImageEmbeds;
        Assert.That(resumed.Infer(features).Coefficients.eq(straight.Infer(features).Coefficients).all().item<bool>(), Is.True);
    }

    [Test]
    public void ACheckpointOfAnotherMethodOrOtherOptionsIsRefused()
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite();
        using var dir = new TempDirectory();
        new AtlasTrainer(Atlas with { Epochs = 1, CheckpointDirectory = dir.Path }).Fit(suite.Engine, suite.Tasks);

        var other = Assert.Throws<InvalidOperationException>(() =>
            new ProbabilisticTaskTrainer(Atlas with { Epochs = 1, CheckpointDirectory = dir.Path }).Fit(suite.Engine, suite.Tasks))!;
        Assert.That(other.Message, Does.Contain(dir.Path).And.Contain("aTLAS checkpoint, not prob-task"));

        var options = Assert.Throws<InvalidOperationException>(() =>
            new AtlasTrainer(Atlas with { Epochs = 2, LearningRate = 0.01, CheckpointDirectory = dir.Path }).Fit(suite.Engine, suite.Tasks))!;
        Assert.That(options.Message, Does.Contain(dir.Path).And.Contain("LearningRate"));

        var fewer = new AtlasTrainer(Atlas with { Epochs = 3, CheckpointDirectory = dir.Path });
        fewer.Fit(suite.Engine, suite.Tasks);
        var e = Assert.Throws<InvalidOperationException>(() => new AtlasTrainer(Atlas with { Epochs = 2, CheckpointDirectory = dir.Path }).Fit(suite.Engine, suite.Tasks))!;
        Assert.That(e.Message, Does.Contain("3 epochs").And.Contain(dir.Path));
    }

    [Test]
    public void VtvcCannotChangeItsEpochsOnResumeBecauseTheScheduleSpansThem()
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite();
        using var dir = new TempDirectory();
        using var _ = new SampleSpecificTrainer(Vtvc(dir.Path) with { Epochs = 1 }).Fit(suite.Engine, suite.Tasks);
        var e = Assert.Throws<InvalidOperationException>(() => new SampleSpecificTrainer(Vtvc(dir.Path) with { Epochs = 2 }).Fit(suite.Engine, suite.Tasks))!;
        Assert.That(e.Message, Does.Contain("Epochs: saved 1, now 2"));
    }

    [Test]
    public void ProgressCarriesTheSelectionAccuraciesAndTheGatedRatio()
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite();
        var reports = new List<CompositionProgress>();
        var result = new AtlasTrainer(Atlas with { Epochs = 1 }).Fit(suite.Engine, suite.Tasks, new SynchronousProgress<CompositionProgress>(reports.Add));
        var epochReport = reports.Single(r => r.SelectionScore is not null);
        // One epoch: the kept coefficients are the ones the epoch report scored.
        var accuracy = CompositionEvaluator.Accuracy(suite.Engine, suite.Tasks, t => t.Selection, _ => result.Coefficients);
        Assert.That(epochReport.SelectionAccuracies, Is.EqualTo(accuracy));
        Assert.That(epochReport.SelectionScore, Is.EqualTo(accuracy.Average()));
        Assert.That(reports.All(r => r.GatedRatio is null), Is.True, "aTLAS has no gate");

        reports.Clear();
        new GatedAtlasTrainer(Atlas with { Epochs = 1 }, new UncertaintyGateOptions { InitialPsi1 = 0.01 })
            .Fit(suite.Engine, suite.Tasks, new SynchronousProgress<CompositionProgress>(reports.Add));
        var steps = reports.Where(r => r.SelectionScore is null).ToArray();
        // z starts at 0, below every threshold ψ1(1 + ψ2·U) > 0: the first step has every gate closed.
        Assert.That(steps[0].GatedRatio, Is.EqualTo(0));
        Assert.That(steps.All(r => r.GatedRatio is >= 0 and <= 1), Is.True);
        var epoch = reports.Single(r => r.SelectionScore is not null);
        Assert.That(epoch.GatedRatio!.Value, Is.EqualTo(steps.Average(r => r.GatedRatio!.Value)).Within(1e-12));

        reports.Clear();
        using var vtvc = new SampleSpecificTrainer(Vtvc() with { Epochs = 1 }).Fit(suite.Engine, suite.Tasks, new SynchronousProgress<CompositionProgress>(reports.Add));
        Assert.That(reports.Where(r => r.SelectionScore is null).All(r => r.GatedRatio is >= 0 and <= 1), Is.True);
    }
}
