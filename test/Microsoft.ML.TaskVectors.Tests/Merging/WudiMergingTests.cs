using Microsoft.ML.TaskVectors.Images;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Merging;
using Microsoft.ML.TaskVectors.TaskVectors;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Merging;

public class WudiMergingTests
{
    /// <summary>Three task vectors of N(0, 0.1²) entries, drawn in turn from one seeded generator.</summary>
    private static Tensor[] ThreeSmallTaus(ulong seed, long rows, long columns)
    {
        var gen = new Generator(seed);
        return [.. Enumerable.Range(0, 3).Select(_ => randn(rows, columns, generator: gen) * 0.1)];
    }

    private static InMemoryTaskVectorSet Set(params Tensor[] taus) =>
        new(taus.Select((_, i) => $"t{i}").ToArray(), taus.Select(t => (IReadOnlyDictionary<string, Tensor>)new Dictionary<string, Tensor> { ["w"] = t, ["b"] = t[0] }).ToArray());

    [Test]
    public void ObjectiveMatchesItsDefinitionOnBothGramSides()
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(1);
        foreach (var shape in new long[][] { [3, 5], [5, 3] })
        {
            var taus = new[] { randn(shape, generator: gen), randn(shape, generator: gen) };
            var m = randn(shape, generator: gen);
            double expected = taus.Sum(t =>
            {
                var d = (m - t).matmul(t.t());
                return d.square().sum().item<float>() / t.square().sum().item<float>();
            });
            Assert.That(WudiMerging.Objective(m, taus).item<float>(), Is.EqualTo(expected).Within(1e-4 * expected));
        }
    }

    [Test]
    public void QuadraticFormGivesTheObjectiveAndItsAutogradGradient()
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(4);
        foreach (var shape in new long[][] { [3, 5], [5, 3] })
        {
            // Float64 so that the comparison sees the formula, not float32 rounding; one task vector is zero.
            var taus = new[] { randn(shape, ScalarType.Float64, generator: gen), zeros(shape, ScalarType.Float64), randn(shape, ScalarType.Float64, generator: gen) * 3 };
            var start = taus[0] + taus[1] + taus[2];
            var quadratic = WudiMerging.Quadratic.Of(taus, start);
            foreach (var point in new[] { start, start + 0.1 * randn(shape, ScalarType.Float64, generator: gen), randn(shape, ScalarType.Float64, generator: gen) })
            {
                var m = point.detach().requires_grad_();
                var reference = WudiMerging.Objective(m, taus);
                reference.backward();
                var (value, gradient) = quadratic.ValueAndGradient(point);
                Assert.That(value, Is.EqualTo(reference.item<double>()).Within(1e-10 * Math.Abs(reference.item<double>())), $"{shape[0]}×{shape[1]}: value");
                Assert.That(gradient.allclose(m.grad!, rtol: 1e-10, atol: 1e-12), Is.True, $"{shape[0]}×{shape[1]}: gradient");
            }
        }
    }

    [Test]
    public void StepsAreThoseOfTorchAdamOnTheObjective()
    {
        // The reference: torch.optim.Adam on the autograd gradient of the objective, from Σt τt.
        using var scope = NewDisposeScope();
        var taus = ThreeSmallTaus(seed: 5, rows: 6, columns: 9);
        using var set = Set(taus);
        var parameter = nn.Parameter(taus[0] + taus[1] + taus[2]);
        using (var adam = optim.Adam([parameter], lr: 1e-2))
        {
            for (int step = 0; step < 25; step++)
            {
                adam.zero_grad();
                WudiMerging.Objective(parameter, taus).backward();
                adam.step();
            }
        }

        var merged = new WudiMerging(learningRate: 1e-2, steps: 25).MergeTensor("w", set);
        Assert.That(merged.allclose(parameter.detach(), rtol: 1e-4, atol: 1e-6), Is.True,
            $"largest difference {(merged - parameter.detach()).abs().max().item<float>()}");
    }

    [Test]
    public void OneTaskVectorIsItsOwnOptimum()
    {
        using var scope = NewDisposeScope();
        var tau = randn(4, 6, generator: new Generator(2));
        using var set = Set(tau);
        var merged = new WudiMerging(learningRate: 1e-2, steps: 20).MergeTensor("w", set);
        Assert.That(merged.allclose(tau, atol: 1e-6), Is.True);
    }

    [Test]
    public void TheObjectiveFallsFromTheSumAndOtherTensorsAreAveraged()
    {
        using var scope = NewDisposeScope();
        var taus = ThreeSmallTaus(seed: 3, rows: 6, columns: 8);
        using var set = Set(taus);
        var wudi = new WudiMerging(learningRate: 1e-2, steps: 100);
        var start = WudiMerging.Objective(taus[0] + taus[1] + taus[2], taus).item<float>();
        var merged = wudi.MergeTensor("w", set);
        Assert.That(WudiMerging.Objective(merged, taus).item<float>(), Is.LessThan(0.5 * start));
        Assert.That(wudi.MergeTensor("w", set).eq(merged).all().item<bool>(), Is.True, "deterministic");
        Assert.That(wudi.MergeTensor("b", set).allclose((taus[0][0] + taus[1][0] + taus[2][0]) / 3, atol: 1e-7), Is.True);
        Assert.That(new WudiMerging(steps: 0).MergeTensor("w", set).allclose(taus[0] + taus[1] + taus[2]), Is.True);
    }

    [Test]
    public void MergingTheTeacherSuiteBeatsThePretrainedModel()
    {
        using var scope = NewDisposeScope();
        using var suite = new Trainers.Composition.TeacherSuite();
        var wudi = new WudiMerging(learningRate: 1e-3, steps: 50);
        var merged = suite.Model.Vision.named_parameters().ToDictionary(p => p.name,
            p => p.parameter.detach() + wudi.MergeTensor(p.name, suite.TaskVectors));
        var pre = ClipImagePreprocessor.For(suite.Model.Config.Vision);
        double Accuracy(ClipWeights weights) => suite.Tasks.Average(task =>
        {
            var data = task.Selection!;
            var x = pre.ToTensor(Enumerable.Range(0, data.Count).Select(data.LoadImage).ToArray());
            using var o = ClipVisionTransformer.Encode(suite.Model.Config.Vision, x, weights);
            var labels = tensor(data.GetLabels().Select(l => (long)l).ToArray());
            return task.Head.Predict(o.ImageEmbeds).eq(labels).to(ScalarType.Float64).mean().item<double>();
        });
        using var noGrad = no_grad();
        Assert.That(Accuracy(new PlainClipWeights(merged)), Is.GreaterThan(Accuracy(suite.Model.Vision.OwnWeights())));
    }

    [Test]
    public void ANonFiniteObjectiveStopsWithTheTensorsName()
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(6);
        using var set = Set(randn(4, 6, generator: gen), randn(4, 6, generator: gen));
        var diverging = new WudiMerging(learningRate: 1e30, steps: 10);
        var e = Assert.Throws<InvalidOperationException>(() => diverging.MergeTensor("w", set));
        Assert.That(e!.Message, Does.Contain("'w'").And.Contain("lower the learning rate"));
    }

    [Test]
    public void CreatedByName() =>
        Assert.That(MergeMethods.Create("wudi", new MergeMethodOptions { WudiSteps = 7 }), Is.TypeOf<WudiMerging>().With.Property("Steps").EqualTo(7));
}
