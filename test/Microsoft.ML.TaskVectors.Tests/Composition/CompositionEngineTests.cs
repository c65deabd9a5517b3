using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Composition;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.TaskVectors;
using Microsoft.ML.TaskVectors.Tests.Models;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Composition;

public class CompositionEngineTests
{
    private const int Tasks = 3;

    private sealed class Fixture : IDisposable
    {
        /// <param name="tileBytes">The library-product tiles' size; only with <paramref name="fused"/> false.</param>
        public Fixture(BlockGranularity granularity = BlockGranularity.PerTensor, int parts = 1, PerSampleStrategy strategy = PerSampleStrategy.Auto, long tileBytes = 4L << 20, bool fused = true)
        {
            Model = ClipModel.CreateRandom(TinyClip.Config(), seed: 11, withText: false);
            var gen = new Generator(12);
            var names = Model.Vision.named_parameters().Select(p => p.name).ToArray();
            TaskVectors = Enumerable.Range(0, Tasks)
                .Select(_ => (IReadOnlyDictionary<string, Tensor>)names.ToDictionary(n => n, n => randn(Model.Vision.get_parameter(n)!.shape, generator: gen) * 0.05))
                .ToArray();
            Set = new InMemoryTaskVectorSet(["a", "b", "c"], TaskVectors);
            Blocks = BlockPartition.Create(names.Select(n => new TensorInfo(n, TensorDType.F32, Set.GetShape(n))).ToArray(), granularity, parts, seed: 5);
            Engine = CompositionEngine.Create(Model, Set, Blocks, new CompositionEngineOptions { Strategy = strategy, TileBytes = tileBytes, MinimumTileRows = 1, FusedCpuKernels = fused });
        }

        public ClipModel Model { get; }
        public IReadOnlyDictionary<string, Tensor>[] TaskVectors { get; }
        public InMemoryTaskVectorSet Set { get; }
        public BlockPartition Blocks { get; }
        public CompositionEngine Engine { get; }

        /// <summary>θ0 + Σt Σj z[t,j]·τt,j written out tensor by tensor, independently of the engine.</summary>
        public Dictionary<string, Tensor> Merge(Tensor z)
        {
            var merged = new Dictionary<string, Tensor>();
            foreach (var (name, p) in Model.Vision.named_parameters())
            {
                var w = p.detach().clone();
                var parts = Blocks.BlocksOf(name);
                var index = Blocks.PartIndex(name, p.shape);
                for (int t = 0; t < Tasks; t++)
                    for (int k = 0; k < parts.Count; k++)
                    {
                        var tau = index is null ? TaskVectors[t][name] : TaskVectors[t][name] * index.eq(k);
                        w = w + z[t, parts[k]] * tau;
                    }
                merged[name] = w;
            }
            return merged;
        }

        public void Dispose()
        {
            Engine.Dispose();
            Set.Dispose();
            Model.Dispose();
        }
    }

    private static Tensor Pixels(int batch, int seed) => randn(batch, 3, 16, 16, generator: new Generator((ulong)seed));

    private static void AssertClose(Tensor actual, Tensor expected, double tolerance = 1e-5) =>
        Assert.That(actual.allclose(expected, rtol: tolerance, atol: tolerance), Is.True,
            $"max |difference| {(actual - expected).abs().max().item<float>()}");

    [TestCase(BlockGranularity.PerTensor, 1, PerSampleStrategy.Materialize, 4L << 20, true)]
    [TestCase(BlockGranularity.PerTensor, 1, PerSampleStrategy.Materialize, 4L << 20, false)]
    [TestCase(BlockGranularity.PerTensor, 1, PerSampleStrategy.Materialize, 700L, false)] // many tiles and a short last one
    [TestCase(BlockGranularity.PerTensor, 1, PerSampleStrategy.Materialize, 100L, false)] // one output row and one sample per tile
    [TestCase(BlockGranularity.PerTensor, 1, PerSampleStrategy.Branch, 4L << 20, true)]
    [TestCase(BlockGranularity.PerLayer, 1, PerSampleStrategy.Auto, 4L << 20, true)]
    [TestCase(BlockGranularity.RandomPartitions, 3, PerSampleStrategy.Auto, 2000L, false)]
    [TestCase(BlockGranularity.RandomPartitions, 3, PerSampleStrategy.Auto, 2000L, true)]
    public void SharedCoefficientsEqualTaskLevelEqualExplicitlyMergedWeights(BlockGranularity granularity, int parts, PerSampleStrategy strategy, long tileBytes, bool fused)
    {
        using var scope = NewDisposeScope();
        using var f = new Fixture(granularity, parts, strategy, tileBytes, fused);
        var z = rand(Tasks, f.Engine.BlockCount, generator: new Generator(3)) * 2 - 0.5;
        var pixels = Pixels(4, 4);

        var merged = ClipVisionTransformer.Encode(f.Model.Config.Vision, pixels, new PlainClipWeights(f.Merge(z)));
        var taskLevel = f.Engine.Forward(pixels, z);
        var perSample = f.Engine.Forward(pixels, z.unsqueeze(0).expand(4, -1, -1));

        AssertClose(taskLevel.ImageEmbeds, merged.ImageEmbeds);
        AssertClose(perSample.ImageEmbeds, merged.ImageEmbeds);
        AssertClose(perSample.Pooled, merged.Pooled);
        var composed = f.Engine.Compose(z);
        foreach (var (name, w) in f.Merge(z)) AssertClose(composed[name], w);
    }

    [Test]
    public void ZeroCoefficientsGiveThePretrainedModel()
    {
        using var scope = NewDisposeScope();
        using var f = new Fixture();
        var pixels = Pixels(2, 5);
        var expected = f.Model.EncodeImage(pixels);
        AssertClose(f.Engine.ForwardBase(pixels).ImageEmbeds, expected);
        AssertClose(f.Engine.Forward(pixels, zeros(2, Tasks, f.Engine.BlockCount)).ImageEmbeds, expected);
    }

    [TestCase(PerSampleStrategy.Materialize, true)]
    [TestCase(PerSampleStrategy.Materialize, false)]
    [TestCase(PerSampleStrategy.Branch, true)]
    public void EachSampleGetsItsOwnWeights(PerSampleStrategy strategy, bool fused)
    {
        using var scope = NewDisposeScope();
        using var f = new Fixture(strategy: strategy, tileBytes: 1000, fused: fused);
        var z = rand(3, Tasks, f.Engine.BlockCount, generator: new Generator(6));
        var pixels = Pixels(3, 7);
        var together = f.Engine.Forward(pixels, z).ImageEmbeds;
        for (int b = 0; b < 3; b++)
        {
            var alone = ClipVisionTransformer.Encode(f.Model.Config.Vision, pixels[b..(b + 1)], new PlainClipWeights(f.Merge(z[b]))).ImageEmbeds;
            AssertClose(together[b..(b + 1)], alone);
        }
    }

    [TestCase(PerSampleStrategy.Materialize, true)]
    [TestCase(PerSampleStrategy.Materialize, false)]
    [TestCase(PerSampleStrategy.Branch, true)]
    public void GradientsReachOnlyTheCoefficientsAndMatchANaivePerSampleForward(PerSampleStrategy strategy, bool fused)
    {
        using var scope = NewDisposeScope();
        using var f = new Fixture(strategy: strategy, tileBytes: 100, fused: fused);
        var z = (rand(2, Tasks, f.Engine.BlockCount, generator: new Generator(8)) * 0.5).requires_grad_();
        var pixels = Pixels(2, 9);
        var target = randn(2, 12, generator: new Generator(10));

        var loss = (f.Engine.Forward(pixels, z).ImageEmbeds * target).sum();
        loss.backward();
        var grad = z.grad!.clone();

        // Reference: ordinary autograd through explicitly merged weights, one sample at a time.
        var zRef = z.detach().clone().requires_grad_();
        var lossRef = zeros(1);
        for (int b = 0; b < 2; b++)
            lossRef = lossRef + (ClipVisionTransformer.Encode(f.Model.Config.Vision, pixels[b..(b + 1)], new PlainClipWeights(f.Merge(zRef[b]))).ImageEmbeds * target[b]).sum();
        lossRef.backward();
        AssertClose(grad, zRef.grad!, 1e-4);
        Assert.That(f.Model.Vision.parameters().All(p => p.grad is null), Is.True, "θ0 must stay frozen");
    }

    [TestCase(true)]
    [TestCase(false)]
    public void GradientsMatchFiniteDifferences(bool fused)
    {
        using var scope = NewDisposeScope();
        using var f = new Fixture(strategy: PerSampleStrategy.Materialize, tileBytes: 1500, fused: fused);
        var z0 = rand(2, Tasks, f.Engine.BlockCount, generator: new Generator(13)) * 0.5;
        var pixels = Pixels(2, 14);
        var target = randn(2, 12, generator: new Generator(15));
        double Loss(Tensor z) { using var _ = no_grad(); return (f.Engine.Forward(pixels, z).ImageEmbeds * target).sum().to(float64).item<double>(); }

        var z = z0.clone().requires_grad_();
        (f.Engine.Forward(pixels, z).ImageEmbeds * target).sum().backward();
        var grad = z.grad!;
        var rng = new Random(1);
        for (int check = 0; check < 8; check++)
        {
            int b = rng.Next(2), t = rng.Next(Tasks), j = rng.Next(f.Engine.BlockCount);
            const float h = 1e-2f;
            var plus = z0.clone(); plus[b, t, j] += h;
            var minus = z0.clone(); minus[b, t, j] -= h;
            double numeric = (Loss(plus) - Loss(minus)) / (2 * h);
            double analytic = grad[b, t, j].item<float>();
            Assert.That(analytic, Is.EqualTo(numeric).Within(2e-2 * Math.Max(1, Math.Abs(numeric))), $"z[{b},{t},{j}]");
        }
    }

    [TestCase(BlockGranularity.PerTensor, 1)]
    [TestCase(BlockGranularity.RandomPartitions, 3)] // each task's rows summed back over its parts
    public void TheTaskVectorViewGivesBackTheTaskVectors(BlockGranularity granularity, int parts)
    {
        using var scope = NewDisposeScope();
        using var f = new Fixture(granularity, parts);
        var view = f.Engine.TaskVectors;
        Assert.That(view.TensorNames, Is.EquivalentTo(f.TaskVectors[0].Keys));
        foreach (var name in view.TensorNames)
            for (int t = 0; t < Tasks; t++)
                AssertClose(view.Get(t, name), f.TaskVectors[t][name], 1e-7);
    }

    [Test]
    public void WrongCoefficientShapesAreRefusedWithTheExpectedShape()
    {
        using var scope = NewDisposeScope();
        using var f = new Fixture();
        var e = Assert.Throws<ArgumentException>(() => f.Engine.Forward(Pixels(2, 1), zeros(3, Tasks, f.Engine.BlockCount)))!;
        Assert.That(e.Message, Does.Contain($"[B=2, {Tasks}, {f.Engine.BlockCount}]"));
        Assert.Throws<ArgumentException>(() => f.Engine.Forward(Pixels(2, 1), zeros(Tasks + 1, f.Engine.BlockCount)));
        Assert.Throws<ArgumentException>(() => f.Engine.Forward(randn(2, 3, 8, 8), zeros(Tasks, f.Engine.BlockCount)));
    }
}
