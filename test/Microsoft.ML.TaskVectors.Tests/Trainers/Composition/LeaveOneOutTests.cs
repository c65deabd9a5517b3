using Microsoft.ML.TaskVectors.Composition;
using Microsoft.ML.TaskVectors.TaskVectors;
using Microsoft.ML.TaskVectors.Trainers.Composition;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Trainers.Composition;

public class LeaveOneOutTests
{
    [Test]
    public void TheViewDropsExactlyOneTaskVector()
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite(tasks: 3);
        var set = suite.TaskVectors;
        var view = new TaskVectorSubset(set, 1);
        Assert.That(view.Count, Is.EqualTo(2));
        Assert.That(view.TaskNames, Is.EqualTo(new[] { "task0", "task2" }));
        Assert.That(view.TensorNames, Is.EqualTo(set.TensorNames));
        var name = set.TensorNames[0];
        Assert.That(view.GetShape(name), Is.EqualTo(set.GetShape(name)));
        Assert.That(view.Get(0, name).eq(set.Get(0, name)).all().item<bool>(), Is.True);
        Assert.That(view.Get(1, name).eq(set.Get(2, name)).all().item<bool>(), Is.True);
        Assert.Throws<ArgumentOutOfRangeException>(() => view.Get(2, name));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TaskVectorSubset(set, 3));

        // The engine over the view holds the kept vectors: composing its task 1 equals composing the full set's task 2.
        using var engine = CompositionEngine.Create(suite.Model, view);
        var x = randn(2, 3, 16, 16, generator: new Generator(5));
        var zView = zeros(2, engine.BlockCount);
        zView[1] = 1;
        var zFull = zeros(3, engine.BlockCount);
        zFull[2] = 1;
        using var a = engine.Forward(x, zView);
        using var b = suite.Engine.Forward(x, zFull);
        Assert.That(a.ImageEmbeds.allclose(b.ImageEmbeds, atol: 1e-5), Is.True);
    }

    [Test]
    public void OneRowPerHeldOutTaskScoredThroughItsOwnHeadAndRepeatable()
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite(tasks: 3, imagesPerTask: 24);
        var options = new LeaveOneOutOptions { Seed = 2, Epochs = 1, BatchSize = 8 };
        var seen = new List<LeaveOneOutProgress>();
        var a = LeaveOneOut.Run(suite.Model, suite.TaskVectors, suite.Tasks, "atlas", options, progress: new Microsoft.ML.TaskVectors.Runtime.SynchronousProgress<LeaveOneOutProgress>(seen.Add));
        var b = LeaveOneOut.Run(suite.Model, suite.TaskVectors, suite.Tasks, "atlas", options);
        Assert.That(a.Select(r => r.HeldOutTask), Is.EqualTo(new[] { "task0", "task1", "task2" }));
        Assert.That(b, Is.EqualTo(a));
        Assert.That(seen.Select(p => p.Task).Distinct(), Is.EqualTo(new[] { "task0", "task1", "task2" }));

        // Independent reference for held-out task 1: an engine over vectors {0, 2}, aTLAS on tasks {0, 2}, task 1 through its head.
        using var engine = CompositionEngine.Create(suite.Model, new TaskVectorSubset(suite.TaskVectors, 1));
        CompositionTask[] others = [suite.Tasks[0], suite.Tasks[2]];
        var z = new AtlasTrainer(new CompositionTrainerOptions { Seed = 2, Epochs = 1, BatchSize = 8 }).Fit(engine, others).Coefficients;
        var expected = CompositionEvaluator.Accuracy(engine, [suite.Tasks[1]], t => t.Selection, _ => z)[0];
        Assert.That(a[1].Accuracy, Is.EqualTo(expected));
        Assert.That(a[1].PretrainedAccuracy, Is.EqualTo(CompositionEvaluator.Accuracy(suite.Engine, [suite.Tasks[1]], t => t.Selection, null)[0]));
        Assert.That(a[1].GatedRatio, Is.Null);
    }

    [Test]
    public void SampleSpecificMethodsRunTheirNetworkOnTheHeldOutSamples()
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite(tasks: 3, imagesPerTask: 24);
        var rows = LeaveOneOut.Run(suite.Model, suite.TaskVectors, suite.Tasks, "vtvc", new LeaveOneOutOptions { Seed = 1, Epochs = 1, BatchSize = 8 });
        Assert.That(rows, Has.Count.EqualTo(3));
        Assert.That(rows.All(r => r.GatedRatio is >= 0 and <= 1), Is.True);
        Assert.That(rows.All(r => r.Accuracy is >= 0 and <= 1), Is.True);
    }

    [Test]
    public void BadInputIsRefused()
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite(tasks: 3, imagesPerTask: 12);
        Assert.That(Assert.Throws<ArgumentException>(() => LeaveOneOut.Run(suite.Model, suite.TaskVectors, suite.Tasks, "negation"))!.Message, Does.Contain("negation"));
        Assert.That(Assert.Throws<ArgumentException>(() => LeaveOneOut.Run(suite.Model, suite.TaskVectors, suite.Tasks, "nope"))!.Message, Does.Contain("Unknown composition method 'nope'"));
        Assert.That(Assert.Throws<ArgumentException>(() => LeaveOneOut.Run(suite.Model, suite.TaskVectors, suite.Tasks.Take(2).ToArray(), "atlas"))!.Message,
            Does.Contain("2 task(s) were given for 3 task vector(s)"));
    }
}
