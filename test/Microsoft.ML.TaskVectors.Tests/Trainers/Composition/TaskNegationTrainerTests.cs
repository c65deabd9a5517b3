using Microsoft.ML.TaskVectors.Data;
using Microsoft.ML.TaskVectors.Images;
using Microsoft.ML.TaskVectors.Trainers.Composition;
using Microsoft.ML.TaskVectors.Trainers.Tasks;
using Microsoft.ML.TaskVectors.Trainers.Variational;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Microsoft.ML.TaskVectors.Tests.Trainers.Composition;

public class TaskNegationTrainerTests
{
    private static readonly TaskNegationOptions Fast = new()
    {
        Epochs = 6, BatchSize = 16, LearningRate = 0.05, WeightDecay = 0, Seed = 3,
        Gate = new UncertaintyGateOptions { InitialPsi1 = 0.01, Eta = 1 },
    };

    /// <summary>
    /// The suite with task 0 relabelled by θ0's own predictions, so the pre-trained model solves the target (accuracy 1)
    /// and forgetting it must move away from θ0; the control keeps its labels (solved by its own task vector).
    /// </summary>
    private static List<CompositionTask> TargetKnownToThePretrainedModel(TeacherSuite suite)
    {
        var pre = ClipImagePreprocessor.For(suite.Model.Config.Vision);
        LabeledImageDataset Relabel(LabeledImageDataset data, ClassificationHeadLike head)
        {
            var images = Enumerable.Range(0, data.Count).Select(data.LoadImage).ToArray();
            using var noGrad = no_grad();
            using var output = suite.Engine.ForwardBase(pre.ToTensor(images));
            var labels = head(output.ImageEmbeds).data<long>().Select(l => (int)l).ToArray();
            return new InMemoryImageDataset(data.Name, data.Split, data.ClassNames, images, labels);
        }
        var target = suite.Tasks[0];
        return [target with { Train = Relabel(target.Train, target.Head.Predict), Selection = Relabel(target.Selection!, target.Head.Predict) }, .. suite.Tasks.Skip(1)];
    }

    private delegate Tensor ClassificationHeadLike(Tensor embeds);

    [Test]
    public void ForgetsTheTargetWhileKeepingTheControls()
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite();
        var tasks = TargetKnownToThePretrainedModel(suite);
        var result = new TaskNegationTrainer(Fast with { Epochs = 8, LearningRate = 0.2 }).Fit(suite.Engine, 0, tasks);

        Assert.That(result.Before.Target, Is.EqualTo(1.0));
        Assert.That(result.After.Target, Is.LessThan(0.5), $"the target is forgotten: {string.Join("; ", result.Candidates)}");
        Assert.That(result.After.Control, Is.GreaterThanOrEqualTo(0.95 * result.Before.Control), "the controls are kept");
        Assert.That(result.ControlConstraintMet, Is.True);
        Assert.That(result.Candidates, Has.Count.EqualTo(8));
        Assert.That(result.Chosen, Is.SameAs(result.Candidates[NegationSelection.Choose(result.Candidates.Select(c => c.Accuracy).ToArray(), result.Before.Control).Index]));

        // The chosen coefficients and gates reproduce the reported accuracies, and closed gates zero their coefficients.
        var after = CompositionEvaluator.Accuracy(suite.Engine, tasks, t => t.Selection, _ => result.Coefficients);
        Assert.That(after[0], Is.EqualTo(result.After.Target));
        Assert.That(after[1], Is.EqualTo(result.After.Control));
        Assert.That(result.Gates.eq(0).logical_or(result.Gates.eq(1)).all().item<bool>(), Is.True);
        Assert.That(result.Coefficients.eq(0).logical_or(result.Gates.eq(1)).all().item<bool>(), Is.True);
    }

    [Test]
    public void TheSelectionRulePicksTheLowestTargetThatKeepsTheControls()
    {
        // Pre-trained control 0.80: the floor is 0.76.
        NegationAccuracy[] epochs =
        [
            new(0.70, 0.80), // 1
            new(0.40, 0.77), // 2
            new(0.20, 0.75), // 3: lower target but control below the floor
            new(0.30, 0.76), // 4: exactly at the floor, lowest eligible target
            new(0.30, 0.79), // 5: ties with 4; the earlier wins
            new(0.10, 0.50), // 6
        ];
        Assert.That(NegationSelection.Choose(epochs, 0.80), Is.EqualTo((3, true)));
        Assert.That(NegationSelection.Choose(epochs, 0.80, minControlRatio: 0.99), Is.EqualTo((0, true)));
        Assert.That(NegationSelection.Choose(epochs, 0.80, minControlRatio: 0.5), Is.EqualTo((5, true)));
        // Nothing eligible: the highest control accuracy, then the lowest target, flagged.
        Assert.That(NegationSelection.Choose([new(0.5, 0.6), new(0.4, 0.7), new(0.3, 0.7)], 0.9), Is.EqualTo((2, false)));
        Assert.Throws<ArgumentException>(() => NegationSelection.Choose([], 0.8));
        Assert.Throws<ArgumentException>(() => NegationSelection.Choose([new(double.NaN, 0.8)], 0.8));
    }

    [Test]
    public void TheBatchLossIsTheClampedNegativeTargetPlusTheControlCrossEntropy()
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite();
        var z = randn(2, suite.Engine.BlockCount, generator: new Generator(4)) * 0.5;
        MultiTaskBatches.Item[] batch = [new(0, 3), new(0, 7), new(0, 1), new(1, 2), new(1, 5), new(1, 0)];
        var pixels = new PixelSource(ClipImagePreprocessor.For(suite.Model.Config.Vision), cache: false);
        double cap = 0.9, weight = 0.7;
        double loss = TaskNegationTrainer.BatchLoss(suite.Engine, suite.Tasks, 0, pixels, batch, z, weight, cap, 0, 1).item<float>();

        // Reference: each sample alone through the engine and its head.
        double expected = 0;
        var pre = ClipImagePreprocessor.For(suite.Model.Config.Vision);
        foreach (var item in batch)
        {
            var data = suite.Tasks[item.Task].Train;
            using var output = suite.Engine.Forward(pre.ToTensor([data.LoadImage(item.Index)]), z);
            double ce = F.cross_entropy(suite.Tasks[item.Task].Head.Logits(output.ImageEmbeds), tensor(new long[] { data.GetLabel(item.Index) })).item<float>();
            expected += item.Task == 0 ? -weight * Math.Min(ce, cap) : ce;
        }
        Assert.That(loss, Is.EqualTo(expected / batch.Length).Within(1e-5));
    }

    [Test]
    public void TheSameSeedGivesTheSameNegation()
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite();
        var options = Fast with { Epochs = 2, TargetThresholdScales = [0.5, 0.25] };
        var a = new TaskNegationTrainer(options).Fit(suite.Engine, 1, suite.Tasks);
        var b = new TaskNegationTrainer(options).Fit(suite.Engine, 1, suite.Tasks);
        var c = new TaskNegationTrainer(options with { Seed = 4 }).Fit(suite.Engine, 1, suite.Tasks);
        Assert.That(a.Candidates, Has.Count.EqualTo(4));
        Assert.That(a.Candidates.Select(k => k.TargetThresholdScale), Is.EqualTo(new[] { 0.5, 0.5, 0.25, 0.25 }));
        Assert.That(b.Candidates, Is.EqualTo(a.Candidates));
        Assert.That(a.Coefficients.eq(b.Coefficients).all().item<bool>(), Is.True);
        Assert.That(a.Gates.eq(b.Gates).all().item<bool>(), Is.True);
        Assert.That(c.Candidates.Select(k => k.Loss), Is.Not.EqualTo(a.Candidates.Select(k => k.Loss)));
    }

    [Test]
    public void BadInputIsRefusedWithAClearMessage()
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite();
        var trainer = new TaskNegationTrainer(Fast);
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => trainer.Fit(suite.Engine, 2, suite.Tasks))!.Message, Does.Contain("target task"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new TaskNegationTrainer(Fast with { TargetThresholdScales = [0] }).Fit(suite.Engine, 0, suite.Tasks))!.Message,
            Does.Contain("TargetThresholdScales"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new TaskNegationTrainer(Fast with { MaxTargetLoss = -1 }).Fit(suite.Engine, 0, suite.Tasks))!.Message,
            Does.Contain("MaxTargetLoss"));

        using var single = new TeacherSuite(tasks: 1);
        Assert.That(Assert.Throws<ArgumentException>(() => trainer.Fit(single.Engine, 0, single.Tasks))!.Message, Does.Contain("at least one control"));
    }

    [Test]
    public void TheFacadeTrainsNegationWithTheFirstTaskAsTarget()
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite();
        Assert.That(CompositionTrainers.Names, Does.Contain("negation"));
        using var trained = CompositionTrainers.Train("negation", suite.Engine, suite.Tasks, seed: 3, epochs: 1, batchSize: 16);
        Assert.That(trained.Method, Is.EqualTo("negation"));
        Assert.That(trained.IsSampleSpecific, Is.False);
        Assert.That(trained.Options["target"]!.GetValue<string>(), Is.EqualTo("task0"));
        var tensors = trained.StateTensors();
        Assert.That(tensors["coefficients"].shape, Is.EqualTo(new long[] { 2, suite.Engine.BlockCount }));
        Assert.That(tensors.ContainsKey("gates"), Is.True);
    }
}
