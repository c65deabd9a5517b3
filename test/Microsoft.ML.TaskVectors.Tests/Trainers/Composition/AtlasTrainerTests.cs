using Microsoft.ML.TaskVectors.Composition;
using Microsoft.ML.TaskVectors.Data;
using Microsoft.ML.TaskVectors.Heads;
using Microsoft.ML.TaskVectors.Images;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.TaskVectors;
using Microsoft.ML.TaskVectors.Tests.Models;
using Microsoft.ML.TaskVectors.Trainers.Composition;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Trainers.Composition;

/// <summary>
/// A generated suite whose "fine-tuned" models are exact: task t's labels are what its head predicts on
/// the features of θ0 + τt, so composing τt with coefficient 1 solves task t and θ0 alone does not.
/// </summary>
internal sealed class TeacherSuite : IDisposable
{
    public TeacherSuite(int tasks = 2, int imagesPerTask = 48, int classes = 3, long seed = 31)
    {
        Model = ClipModel.CreateRandom(TinyClip.Config(), seed, withText: false);
        var gen = new Generator((ulong)seed + 1);
        var names = Model.Vision.named_parameters().Select(p => p.name).ToArray();
        var vectors = Enumerable.Range(0, tasks).Select(_ => (IReadOnlyDictionary<string, Tensor>)names.ToDictionary(
            n => n, n => randn(Model.Vision.get_parameter(n)!.shape, generator: gen) * 0.3)).ToArray();
        TaskVectors = new InMemoryTaskVectorSet(Enumerable.Range(0, tasks).Select(t => $"task{t}").ToArray(), vectors);
        Engine = CompositionEngine.Create(Model, TaskVectors);
        var pre = ClipImagePreprocessor.For(Model.Config.Vision);
        var rng = new Random((int)seed);
        Tasks = new List<CompositionTask>();
        for (int t = 0; t < tasks; t++)
        {
            var head = new LinearHead(randn(classes, 12, generator: gen) * 2, null, Enumerable.Range(0, classes).Select(c => $"c{c}").ToArray());
            var images = Enumerable.Range(0, imagesPerTask).Select(_ =>
            {
                var pixels = new byte[16 * 16 * 3];
                rng.NextBytes(pixels);
                return new RgbImage(16, 16, pixels);
            }).ToArray();
            var z = zeros(tasks, Engine.BlockCount);
            z[t] = 1;
            int[] labels;
            using (no_grad())
            using (var o = Engine.Forward(pre.ToTensor(images), z))
                labels = head.Predict(o.ImageEmbeds).data<long>().Select(l => (int)l).ToArray();
            var train = new InMemoryImageDataset($"task{t}", DatasetSplit.Train, head.ClassNames, images[..(imagesPerTask * 2 / 3)], labels[..(imagesPerTask * 2 / 3)]);
            var test = new InMemoryImageDataset($"task{t}", DatasetSplit.Test, head.ClassNames, images[(imagesPerTask * 2 / 3)..], labels[(imagesPerTask * 2 / 3)..]);
            Tasks.Add(new CompositionTask($"task{t}", train, head, Selection: test, FineTunedAccuracy: 1.0));
        }
    }

    public ClipModel Model { get; }
    public InMemoryTaskVectorSet TaskVectors { get; }
    public CompositionEngine Engine { get; }
    public List<CompositionTask> Tasks { get; }

    public void Dispose()
    {
        Engine.Dispose();
        TaskVectors.Dispose();
        Model.Dispose();
        foreach (var t in Tasks) t.Head.Dispose();
    }
}

public class AtlasTrainerTests
{
    private static readonly CompositionTrainerOptions Fast = new() { Epochs = 6, BatchSize = 16, LearningRate = 0.05, WeightDecay = 0, Seed = 3 };

    [Test]
    public void LearnsCoefficientsThatBeatThePretrainedModel()
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite();
        var before = CompositionEvaluator.Accuracy(suite.Engine, suite.Tasks, t => t.Selection, null);
        var result = new AtlasTrainer(Fast).Fit(suite.Engine, suite.Tasks);
        var after = CompositionEvaluator.Accuracy(suite.Engine, suite.Tasks, t => t.Selection, _ => result.Coefficients);

        Assert.That(result.EpochLosses[^1], Is.LessThan(result.EpochLosses[0]));
        Assert.That(after.Average(), Is.GreaterThan(before.Average() + 0.1), $"before {string.Join(", ", before)}; after {string.Join(", ", after)}");
        Assert.That(result.SelectionScores[result.BestEpoch - 1], Is.EqualTo(result.SelectionScores.Max()));
        // Each task leans on its own task vector.
        var meanZ = result.Coefficients.mean([1L]);
        Assert.That(meanZ[0].item<float>(), Is.GreaterThan(0));
        Assert.That(meanZ[1].item<float>(), Is.GreaterThan(0));
    }

    [Test]
    public void TheProbabilisticAndGatedTaskLevelVariantsLearnToo()
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite();
        var before = CompositionEvaluator.Accuracy(suite.Engine, suite.Tasks, t => t.Selection, null).Average();
        var probabilistic = new ProbabilisticTaskTrainer(Fast).Fit(suite.Engine, suite.Tasks);
        Assert.That(probabilistic.EpochLosses[^1], Is.LessThan(probabilistic.EpochLosses[0]));
        Assert.That(CompositionEvaluator.Accuracy(suite.Engine, suite.Tasks, t => t.Selection, _ => probabilistic.Coefficients).Average(), Is.GreaterThan(before));

        var (gated, gates) = new GatedAtlasTrainer(Fast, new Microsoft.ML.TaskVectors.Trainers.Variational.UncertaintyGateOptions { InitialPsi1 = 0.01 }).Fit(suite.Engine, suite.Tasks);
        Assert.That(gated.EpochLosses[^1], Is.LessThan(gated.EpochLosses[0]));
        Assert.That(gates.eq(0).logical_or(gates.eq(1)).all().item<bool>(), Is.True);
        Assert.That(gated.Coefficients.eq(0).logical_or(gates.eq(1)).all().item<bool>(), Is.True, "closed gates zero their coefficients");
        Assert.That(CompositionEvaluator.Accuracy(suite.Engine, suite.Tasks, t => t.Selection, _ => gated.Coefficients).Average(), Is.GreaterThan(before));
    }

    [Test]
    public void TheSameSeedGivesTheSameCoefficients()
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite();
        var options = Fast with { Epochs = 2 };
        var a = new AtlasTrainer(options).Fit(suite.Engine, suite.Tasks).Coefficients;
        var b = new AtlasTrainer(options).Fit(suite.Engine, suite.Tasks).Coefficients;
        var c = new AtlasTrainer(options with { Seed = 4 }).Fit(suite.Engine, suite.Tasks).Coefficients;
        Assert.That(a.eq(b).all().item<bool>(), Is.True);
        Assert.That(a.eq(c).all().item<bool>(), Is.False);
    }

    [Test]
    public void MixedBatchesTakeEveryTaskEvenly()
    {
        var batches = MultiTaskBatches.ForEpoch([10, 3], batchSize: 4, seed: 1, epoch: 1);
        Assert.That(batches, Has.Count.EqualTo(5));
        Assert.That(batches.All(b => b.Count(i => i.Task == 0) == 2 && b.Count(i => i.Task == 1) == 2), Is.True);
        Assert.That(batches.SelectMany(b => b).Where(i => i.Task == 0).Select(i => i.Index).Order(), Is.EqualTo(Enumerable.Range(0, 10)));
        Assert.That(MultiTaskBatches.ForEpoch([10, 3], 4, 1, 2).SelectMany(b => b), Is.Not.EqualTo(batches.SelectMany(b => b)));
        Assert.Throws<ArgumentOutOfRangeException>(() => MultiTaskBatches.ForEpoch([10, 3, 4], 2, 1, 1));
    }

    [Test]
    public void MismatchedTasksAreRefused()
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite();
        var e = Assert.Throws<ArgumentException>(() => new AtlasTrainer(Fast).Fit(suite.Engine, suite.Tasks.Take(1).ToArray()))!;
        Assert.That(e.Message, Does.Contain("1 task(s) were given for 2 task vector(s)"));
    }
}
