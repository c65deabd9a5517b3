using Microsoft.ML.TaskVectors.Merging;
using Microsoft.ML.TaskVectors.Trainers.Composition;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Trainers.Composition;

public class WudiCompositionTests
{
    [Test]
    public void TheEngineGivesBackTheTaskVectorsItWasBuiltFrom()
    {
        using var scope = NewDisposeScope();
        using var suite = new TeacherSuite();
        var view = suite.Engine.TaskVectors;
        Assert.That(view.Count, Is.EqualTo(suite.TaskVectors.Count));
        Assert.That(view.TensorNames, Is.Not.Empty);
        foreach (var name in view.TensorNames)
            for (int t = 0; t < view.Count; t++)
                Assert.That(view.Get(t, name).allclose(suite.TaskVectors.Get(t, name), rtol: 0, atol: 1e-7), Is.True, $"{name}, task {t}");
        Assert.Throws<ArgumentException>(() => view.Get(0, "no.such.tensor"));
        Assert.Throws<ArgumentOutOfRangeException>(() => view.Get(view.Count, view.TensorNames[0]));
    }

    [Test]
    public void WudiThroughTheFacadeMergesEachTensorBeatsThePretrainedModelAndRoundTrips()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDirectory();
        using var suite = new TeacherSuite();
        using var trained = CompositionTrainers.Train("wudi", suite.Engine, suite.Tasks, seed: 1, epochs: 2);
        Assert.That(trained.Method, Is.EqualTo("wudi"));
        Assert.That(trained.Options["steps"]!.GetValue<int>(), Is.EqualTo(50));

        // Each tensor of the merged task vector is WUDI's merge of that tensor, computed here on its own, and the
        // model scored is θ0 plus it.
        var name = suite.Engine.TaskVectors.TensorNames.First(n => suite.Engine.TaskVectors.GetShape(n).Length == 2);
        var expected = new WudiMerging(steps: 50).MergeTensor(name, suite.TaskVectors);
        Assert.That(trained.StateTensors()["task_vector." + name].allclose(expected, rtol: 1e-5, atol: 1e-6), Is.True);
        Assert.Throws<NotSupportedException>(() => trained.For(suite.Engine, randn(1, 3, 16, 16)));

        double Mean(IEnumerable<double> a) => a.Average();
        var before = Mean(CompositionEvaluator.Accuracy(suite.Engine, suite.Tasks, t => t.Selection, null));
        var scores = CompositionEvaluator.Evaluate(suite.Engine, suite.Tasks, t => t.Selection, trained);
        Assert.That(Mean(scores.Select(s => s.Accuracy)), Is.GreaterThan(before));
        Assert.That(scores.All(s => s.GatedRatio is null), Is.True);

        File.WriteAllText(dir.File("ref"), "x");
        var reference = FileReference.Of(dir.File("ref"));
        using (var state = new CompositionState(trained.Method, trained.Options, ["task0", "task1"], reference, [reference, reference], [null, null], trained.StateTensors()))
            state.Save(dir.File("state"));
        using var loadedState = CompositionState.Load(dir.File("state"));
        using var loaded = TrainedComposition.FromState(loadedState, suite.Engine);
        var pixels = randn(4, 3, 16, 16, generator: new Generator(5));
        using var noGrad = no_grad();
        var (a, _) = trained.Encode(suite.Engine, pixels);
        var (b, _) = loaded.Encode(suite.Engine, pixels);
        Assert.That(b.ImageEmbeds.eq(a.ImageEmbeds).all().item<bool>(), Is.True);
    }
}
