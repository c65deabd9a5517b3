using Microsoft.ML.TaskVectors.Heads;
using static Microsoft.ML.TaskVectors.Tests.Heads.ClassificationHeadTests;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Heads;

public class LinearHeadTests
{
    [Test]
    public void Logits_MatchHandComputedValues()
    {
        using var scope = NewDisposeScope();
        using var head = new LinearHead(tensor(new float[,] { { 1, 0 }, { 0, 1 }, { 1, 1 } }), tensor(new float[] { 0.5f, -1, 0 }), ["a", "b", "c"]);
        // (2,3)·Wᵀ + b = (2.5, 2, 5);  (−1,4)·Wᵀ + b = (−0.5, 3, 3) (a tie: the first wins)
        var embeds = tensor(new double[,] { { 2, 3 }, { -1, 4 } });
        var logits = head.Logits(embeds);
        Assert.That(logits.dtype, Is.EqualTo(ScalarType.Float32));
        Assert.That(Values(logits), Is.EqualTo(new[] { 2.5, 2, 5, -0.5, 3, 3 }).Within(1e-6));
        Assert.That(head.Predict(embeds).data<long>().ToArray(), Is.EqualTo(new long[] { 2, 1 }));
        Assert.That(head.Kind, Is.EqualTo(ClassificationHeadKind.Linear));
        Assert.That((head.ClassCount, head.EmbeddingDim), Is.EqualTo((3, 2)));

        using var noBias = new LinearHead(tensor(new float[,] { { 1, 0 }, { 0, 1 }, { 1, 1 } }), null, ["a", "b", "c"]);
        Assert.That(noBias.Bias, Is.Null);
        Assert.That(Values(noBias.Logits(embeds)), Is.EqualTo(new[] { 2, 3, 5, -1, 4, 3.0 }).Within(1e-6));
    }

    [Test]
    public void Logits_PassGradientToTheEmbeddings()
    {
        using var scope = NewDisposeScope();
        using var head = new LinearHead(tensor(new float[,] { { 1, 2 }, { 3, -1 } }), tensor(new float[] { 0, 0 }), ["a", "b"]);
        var e = tensor(new float[,] { { 1, 1 }, { 2, 0 } }, requires_grad: true);
        head.Logits(e).sum().backward();
        // d(Σ logits)/de = column sums of W = (4, 1) for every row.
        Assert.That(Values(e.grad!), Is.EqualTo(new[] { 4, 1, 4, 1.0 }).Within(1e-6));
        Assert.That(head.Weight.requires_grad, Is.False);
    }

    [Test]
    public void Logits_RejectWrongInput()
    {
        using var scope = NewDisposeScope();
        using var head = new LinearHead(ones(3, 4), null, ["a", "b", "c"]);
        Assert.That(Assert.Throws<ArgumentException>(() => head.Logits(ones(2, 5)))!.Message, Does.Contain("[batch, 4]").And.Contain("[2, 5]"));
        Assert.That(Assert.Throws<ArgumentException>(() => head.Logits(ones(4)))!.Message, Does.Contain("[batch, 4]"));
        Assert.That(Assert.Throws<ArgumentException>(() => head.Logits(ones(2, 4, ScalarType.Int64)))!.Message, Does.Contain("floating point"));
        Assert.That(head.To(CPU), Is.SameAs(head));
    }

    [Test]
    public void Constructor_ValidatesAndCopies()
    {
        using var scope = NewDisposeScope();
        var w = ones(2, 3);
        Assert.That(Assert.Throws<ArgumentException>(() => new LinearHead(w, ones(3), ["a", "b"]))!.Message, Does.Contain("bias must be [2]"));
        Assert.That(Assert.Throws<ArgumentException>(() => new LinearHead(ones(6), null, ["a", "b"]))!.Message, Does.Contain("[classes, D]"));
        Assert.That(Assert.Throws<ArgumentException>(() => new LinearHead(w, null, ["a", ""]))!.Message, Does.Contain("Class name 1"));
        Assert.That(Assert.Throws<ArgumentException>(() => new LinearHead(w, tensor(new[] { 0f, float.PositiveInfinity }), ["a", "b"]))!.Message,
            Does.Contain("infinite"));
        using var head = new LinearHead(w, null, ["a", "b"]);
        w.fill_(5);
        Assert.That(Values(head.Weight), Is.All.EqualTo(1.0), "the head keeps its own copy");
    }

    [Test]
    public void Fit_SeparatesLinearlySeparableBlobs()
    {
        using var scope = NewDisposeScope();
        var (features, labels) = Blobs(perClass: 20, seed: 1);
        var progress = new ListProgress();
        var result = LinearHead.FitWithReport(features, labels, ["left", "right", "up"], progress: progress);
        using var head = result.Head;

        Assert.That(result.TrainAccuracy, Is.EqualTo(1.0));
        Assert.That(head.Predict(features).eq(labels).all().item<bool>(), Is.True);
        Assert.That(result.Converged, Is.True);
        Assert.That(result.Losses[0], Is.EqualTo(Math.Log(3)).Within(1e-12), "zero weights give uniform probabilities");
        Assert.That(result.Losses.Zip(result.Losses.Skip(1)).All(p => p.Second <= p.First), Is.True, "the objective never increases");
        Assert.That(result.Losses[^1], Is.LessThan(0.1));
        Assert.That(result.Losses, Has.Count.EqualTo(result.Iterations + 1));
        Assert.That(head.Weight.isfinite().all().item<bool>() && head.Bias!.isfinite().all().item<bool>(), Is.True);
        // Default L2: 1e-4 × the mean squared feature.
        Assert.That(result.L2, Is.EqualTo(1e-4 * features.to(ScalarType.Float64).square().mean().item<double>()).Within(1e-15));
        Assert.That(progress.Reports[^1], Is.EqualTo(1));
        Assert.That(progress.Reports.Zip(progress.Reports.Skip(1)).All(p => p.Second >= p.First), Is.True);

        // Fresh samples of the same blobs.
        var (test, testLabels) = Blobs(perClass: 50, seed: 2);
        var accuracy = head.Predict(test).eq(testLabels).to(ScalarType.Float64).mean().item<double>();
        Assert.That(accuracy, Is.GreaterThanOrEqualTo(0.95));
    }

    [Test]
    public void Fit_IsDeterministic()
    {
        using var scope = NewDisposeScope();
        var (features, labels) = Blobs(perClass: 10, seed: 3);
        using var a = LinearHead.Fit(features, labels, ["a", "b", "c"]);
        using var b = LinearHead.Fit(features, labels.data<long>().ToArray(), ["a", "b", "c"]);
        Assert.That(a.Weight.eq(b.Weight).all().item<bool>(), Is.True);
        Assert.That(a.Bias!.eq(b.Bias!).all().item<bool>(), Is.True);
    }

    [TestCase(0.0)]
    [TestCase(5.0)]
    public void Fit_TwoPoints_MatchTheClosedFormStationaryPoint(double shift)
    {
        // x = shift ± 1 with labels 1 and 0, λ = 0.1. By symmetry W = (−w, w) and the logit gap at x is 2w(x − shift):
        // the objective log(1 + e^(−2w)) + λw² is stationary where σ(−2w) = λw. The unpenalised bias absorbs the shift:
        // b₁ − b₀ = −2w·shift.
        using var scope = NewDisposeScope();
        var features = tensor(new float[,] { { (float)(shift + 1) }, { (float)(shift - 1) } });
        var result = LinearHead.FitWithReport(features, tensor(new long[] { 1, 0 }), ["minus", "plus"],
            new LinearProbeOptions { L2 = 0.1, GradientTolerance = 1e-10 });
        using var head = result.Head;

        double w = Bisect(v => 1 / (1 + Math.Exp(2 * v)) - 0.1 * v, 0, 10);
        Assert.That(result.Converged, Is.True);
        Assert.That(Values(head.Weight), Is.EqualTo(new[] { -w, w }).Within(1e-5));
        var bias = Values(head.Bias!);
        Assert.That(bias[1] - bias[0], Is.EqualTo(-2 * w * shift).Within(1e-4));
        Assert.That(result.Losses[^1], Is.EqualTo(Math.Log(1 + Math.Exp(-2 * w)) + 0.1 * w * w).Within(1e-9));
    }

    [Test]
    public void Fit_ReachesAStationaryPointOfTheObjective()
    {
        // An independent gradient: autograd through cross_entropy of the returned (raw) weights.
        using var scope = NewDisposeScope();
        var (features, labels) = Blobs(perClass: 8, seed: 4, noise: 3);
        var result = LinearHead.FitWithReport(features, labels, ["a", "b", "c"], new LinearProbeOptions { L2 = 0.05 });
        using var head = result.Head;
        Assert.That(result.TrainAccuracy, Is.LessThan(1), "noisy blobs overlap, so the optimum is interior");

        var w = head.Weight.to(ScalarType.Float64).detach().requires_grad_();
        var b = head.Bias!.to(ScalarType.Float64).detach().requires_grad_();
        var x = features.to(ScalarType.Float64);
        var loss = nn.functional.cross_entropy(x.matmul(w.t()) + b, labels) + 0.5 * 0.05 * w.square().sum();
        loss.backward();
        Assert.That(loss.item<double>(), Is.EqualTo(result.Losses[^1]).Within(1e-5));
        Assert.That(w.grad!.abs().max().item<double>(), Is.LessThan(1e-4));
        Assert.That(b.grad!.abs().max().item<double>(), Is.LessThan(1e-4));
    }

    [Test]
    public void Fit_DefaultL2_MakesTheFitScaleInvariant()
    {
        // Features × 10 with λ ∝ mean squared feature: the same logits, so weights / 10 and the same bias.
        using var scope = NewDisposeScope();
        var (features, labels) = Blobs(perClass: 8, seed: 5, noise: 3);
        var options = new LinearProbeOptions { GradientTolerance = 1e-9 };
        using var small = LinearHead.Fit(features, labels, ["a", "b", "c"], options);
        using var large = LinearHead.Fit(features * 10, labels, ["a", "b", "c"], options);
        Assert.That((large.Weight * 10).allclose(small.Weight, rtol: 1e-3, atol: 1e-4), Is.True);
        Assert.That(large.Bias!.allclose(small.Bias!, rtol: 1e-3, atol: 1e-3), Is.True);
    }

    [Test]
    public void Fit_WithoutBias_HasNoBias()
    {
        using var scope = NewDisposeScope();
        var (features, labels) = Blobs(perClass: 10, seed: 6);
        var result = LinearHead.FitWithReport(features, labels, ["a", "b", "c"], new LinearProbeOptions { FitBias = false });
        using var head = result.Head;
        Assert.That(head.Bias, Is.Null);
        Assert.That(result.TrainAccuracy, Is.EqualTo(1.0));
    }

    [Test]
    public void Fit_ValidatesItsInput()
    {
        using var scope = NewDisposeScope();
        var x = randn(4, 3);
        string[] names = ["a", "b", "c"];
        Assert.That(Assert.Throws<ArgumentException>(() => LinearHead.Fit(x, new long[] { 0, 1, 5, 2 }, names))!.Message,
            Does.Contain("Label 2 is 5").And.Contain("[0, 3)"));
        Assert.That(Assert.Throws<ArgumentException>(() => LinearHead.Fit(x, new long[] { 0, -1, 2, 2 }, names))!.Message, Does.Contain("Label 1 is -1"));
        Assert.That(Assert.Throws<ArgumentException>(() => LinearHead.Fit(x, new long[] { 0, 1, 2 }, names))!.Message, Does.Contain("Labels must be [4]"));
        Assert.That(Assert.Throws<ArgumentException>(() => LinearHead.Fit(x, tensor(new float[] { 0, 1, 2, 0 }), names))!.Message, Does.Contain("integer"));
        var nan = x.clone();
        nan[2, 1] = tensor(float.NaN);
        Assert.That(Assert.Throws<ArgumentException>(() => LinearHead.Fit(nan, new long[] { 0, 1, 2, 0 }, names))!.Message,
            Does.Contain("row 2, column 1"));
        Assert.That(Assert.Throws<ArgumentException>(() => LinearHead.Fit(randn(4), new long[] { 0, 1, 2, 0 }, names))!.Message, Does.Contain("[N, D]"));
        Assert.That(Assert.Throws<ArgumentException>(() => LinearHead.Fit(x, new long[] { 0, 1, 1, 0 }, ["a", "a"]))!.Message, Does.Contain("twice"));
        Assert.That(Assert.Throws<ArgumentException>(() => LinearHead.Fit(x, new long[] { 0, 1, 1, 0 }, ["a", "b"], new LinearProbeOptions { L2 = -1 }))!.Message,
            Does.Contain("LinearProbeOptions.L2"));
        Assert.That(Assert.Throws<ArgumentException>(() => LinearHead.Fit(x, new long[] { 0, 1, 1, 0 }, ["a", "b"], new LinearProbeOptions { MaxIterations = 0 }))!.Message,
            Does.Contain("MaxIterations"));
    }

    [Test]
    public void Fit_StopsWhenCancelled()
    {
        using var scope = NewDisposeScope();
        var (features, labels) = Blobs(perClass: 5, seed: 7);
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.Throws<OperationCanceledException>(() => LinearHead.Fit(features, labels, ["a", "b", "c"], cancellationToken: cancelled.Token));
    }

    [Test]
    public void Fit_StopsAtTheIterationLimit()
    {
        using var scope = NewDisposeScope();
        var (features, labels) = Blobs(perClass: 10, seed: 8);
        var result = LinearHead.FitWithReport(features, labels, ["a", "b", "c"], new LinearProbeOptions { MaxIterations = 2 });
        using var head = result.Head;
        Assert.That((result.Iterations, result.Converged), Is.EqualTo((2, false)));
        Assert.That(result.Losses[2], Is.LessThan(result.Losses[0]));
    }

    [Test]
    public void FittedHead_OutlivesTheDisposeScopeItWasFittedIn()
    {
        LinearHead head;
        using (var scope = NewDisposeScope())
        {
            var (features, labels) = Blobs(perClass: 5, seed: 9);
            head = LinearHead.Fit(features, labels, ["a", "b", "c"]);
        }
        using (head)
        using (var scope = NewDisposeScope())
            Assert.That(head.Logits(ones(2, 5)).isfinite().all().item<bool>(), Is.True);
    }

    /// <summary>Three Gaussian blobs in 5-D, centred far from the origin (so centring matters), labels 0, 1, 2.</summary>
    private static (Tensor Features, Tensor Labels) Blobs(int perClass, int seed, double noise = 0.5)
    {
        var generator = new TorchSharp.torch.Generator((ulong)seed);
        var centres = tensor(new float[,] { { 4, 0, 0, 0, 0 }, { -4, 0, 0, 0, 0 }, { 0, 4, 0, 0, 0 } }) + 10;
        var labels = arange(3, ScalarType.Int64).repeat_interleave(perClass);
        var features = centres.index_select(0, labels) + noise * randn(3 * perClass, 5, generator: generator);
        return (features, labels);
    }

    private static double Bisect(Func<double, double> f, double lo, double hi)
    {
        for (int i = 0; i < 200; i++)
        {
            double mid = (lo + hi) / 2;
            if (Math.Sign(f(mid)) == Math.Sign(f(lo))) lo = mid; else hi = mid;
        }
        return (lo + hi) / 2;
    }
}
