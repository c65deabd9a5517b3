using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.TaskVectors;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.TaskVectors;

public class TaskVectorTests
{
    internal static string Write(TempDirectory dir, string file, params (string Name, Tensor Value)[] tensors)
    {
        var path = dir.File(file);
        SafetensorsWriter.Save(path, tensors.ToDictionary(t => t.Name, t => t.Value));
        return path;
    }

    [Test]
    public void TaskVectorIsFinetunedMinusBaseOverSelectedFloatTensors()
    {
        using var dir = new TempDirectory();
        using var ids = arange(3L);
        var basePath = Write(dir, "base.safetensors",
            ("vision_model.w", tensor(new float[] { 1, 2, 3 })), ("text_model.w", tensor(new float[] { 1 })), ("vision_model.position_ids", ids));
        var ftPath = Write(dir, "ft.safetensors",
            ("vision_model.w", tensor(new float[] { 1.5f, 0, 3 })), ("text_model.w", tensor(new float[] { 9 })), ("vision_model.position_ids", ids));

        using var tv = TaskVector.FromFiles(basePath, ftPath, TensorFilter.ClipVisionTower);
        Assert.That(tv.Name, Is.EqualTo("ft"));
        Assert.That(tv.Tensors.Select(t => t.Name), Is.EqualTo(new[] { "vision_model.w" }), "text tower and the I64 buffer are excluded");
        using var tau = tv.Read("vision_model.w");
        Assert.That(tau.data<float>().ToArray(), Is.EqualTo(new[] { 0.5f, -2f, 0f }));
    }

    [Test]
    public void MismatchedCheckpointsListEveryOffendingTensor()
    {
        using var dir = new TempDirectory();
        var basePath = Write(dir, "base.safetensors",
            ("a", zeros(2)), ("b", zeros(2)), ("c", zeros(2)), ("only_base", zeros(1)));
        var ftPath = Write(dir, "ft.safetensors",
            ("a", zeros(2)), ("b", zeros(3)), ("c", zeros(2, dtype: ScalarType.Float16)), ("only_ft", zeros(1)));
        var e = Assert.Throws<ArgumentException>(() => TaskVector.FromFiles(basePath, ftPath))!;
        Assert.That(e.Message, Does.Contain("4 tensor(s)"));
        Assert.That(e.Message, Does.Contain("'b' has shape [2] in the base but [3]"));
        Assert.That(e.Message, Does.Contain("'c' has dtype F32 in the base but F16"));
        Assert.That(e.Message, Does.Contain("'only_base' is missing from the fine-tuned"));
        Assert.That(e.Message, Does.Contain("'only_ft' is missing from the base"));
        Assert.That(e.Message, Does.Not.Contain("'a'"));
    }

    [TestCase(TensorDType.F32)]
    [TestCase(TensorDType.F16)]
    [TestCase(TensorDType.BF16)]
    public void SavedTaskVectorLoadsBackInItsStoragePrecision(TensorDType storage)
    {
        using var dir = new TempDirectory();
        var basePath = Write(dir, "base.safetensors", ("w", tensor(new float[] { 1, 2, 3, 4 })));
        var ftPath = Write(dir, "ft.safetensors", ("w", tensor(new float[] { 1.25f, 1.5f, 3, 8 })));
        using var tv = TaskVector.FromFiles(basePath, ftPath, name: "cars");
        var tauPath = dir.File("tau.safetensors");
        tv.Save(tauPath, storage);

        using var loaded = TaskVector.Load(tauPath);
        Assert.That(loaded.GetInfo("w").DType, Is.EqualTo(storage));
        using var tau = loaded.Read("w");
        Assert.That(tau.data<float>().ToArray(), Is.EqualTo(new[] { 0.25f, -0.5f, 0f, 4f }), "these values are exact in every storage type");
        using var ckpt = Checkpoint.Open(tauPath);
        Assert.That(ckpt.Metadata["task"], Is.EqualTo("cars"));
    }

    [Test]
    public void PoolRejectsTaskVectorsOverDifferentTensors()
    {
        using var dir = new TempDirectory();
        var b = Write(dir, "b.safetensors", ("x", zeros(2)), ("y", zeros(2)));
        var f1 = Write(dir, "f1.safetensors", ("x", ones(2)), ("y", ones(2)));
        using var baseCkpt = Checkpoint.Open(b);
        using var f1Ckpt = Checkpoint.Open(f1);
        var full = TaskVector.FromCheckpoints(baseCkpt, f1Ckpt, name: "full");
        var onlyX = TaskVector.FromCheckpoints(baseCkpt, f1Ckpt, new TensorFilter(include: ["^x$"]), name: "onlyX");
        var e = Assert.Throws<ArgumentException>(() => new TaskVectorPool([full, onlyX]))!;
        Assert.That(e.Message, Does.Contain("'y' is in 'full' but not in 'onlyX'"));
    }

    [Test]
    public void PoolStoresInHalfPrecisionAndReturnsFloat32()
    {
        using var dir = new TempDirectory();
        var b = Write(dir, "b.safetensors", ("x", zeros(3)));
        var f1 = Write(dir, "f1.safetensors", ("x", tensor(new float[] { 1f, 1f / 3, 1e-8f })));
        var f2 = Write(dir, "f2.safetensors", ("x", tensor(new float[] { 2f, 0, -1f })));
        using var baseCkpt = Checkpoint.Open(b);
        using var c1 = Checkpoint.Open(f1);
        using var c2 = Checkpoint.Open(f2);
        using var pool = TaskVectorPool.FromCheckpoints(baseCkpt, [c1, c2], storage: TensorDType.F16, keepInMemory: true);
        pool.Load();
        using var x0 = pool.Get(0, "x");
        Assert.That(x0.dtype, Is.EqualTo(ScalarType.Float32));
        // 1/3 rounds to the nearest half, 0.333251953125; 1e-8 is below half's smallest subnormal and flushes to 0.
        Assert.That(x0.data<float>().ToArray(), Is.EqualTo(new[] { 1f, 0.333251953125f, 0f }));
        using var stacked = pool.Stack("x");
        Assert.That(stacked.shape, Is.EqualTo(new long[] { 2, 3 }));
        Assert.That(stacked[1].data<float>().ToArray(), Is.EqualTo(new[] { 2f, 0f, -1f }));
    }

    [Test]
    public void PoolSumOverASharedBaseEqualsTheSumOfTaskVectors()
    {
        using var dir = new TempDirectory();
        var (basePath, fts) = RandomCheckpoints.Write(dir, tasks: 3);
        using var b = Checkpoint.Open(basePath);
        var cks = fts.Select(Checkpoint.Open).ToArray();
        using var pool = TaskVectorPool.FromCheckpoints(b, cks);
        using var scope = NewDisposeScope();
        foreach (var name in pool.TensorNames)
        {
            var expected = pool.Get(0, name) + pool.Get(1, name) + pool.Get(2, name);
            Assert.That(pool.Sum(name).allclose(expected, rtol: 1e-5, atol: 1e-6), Is.True, name);
        }
        foreach (var c in cks) c.Dispose();
    }

    [Test]
    public void BlocksPerTensorPerLayerAndPerTaskVector()
    {
        var tensors = new[]
        {
            new TensorInfo("vision_model.embeddings.patch_embedding.weight", TensorDType.F32, [4, 3, 2, 2]),
            new TensorInfo("vision_model.encoder.layers.0.mlp.fc1.weight", TensorDType.F32, [8, 4]),
            new TensorInfo("vision_model.encoder.layers.0.mlp.fc1.bias", TensorDType.F32, [8]),
            new TensorInfo("vision_model.encoder.layers.1.mlp.fc1.weight", TensorDType.F32, [8, 4]),
            new TensorInfo("visual.transformer.resblocks.11.attn.in_proj_weight", TensorDType.F32, [12, 4]),
        };
        Assert.That(BlockPartition.Create(tensors).Count, Is.EqualTo(5));
        var layers = BlockPartition.Create(tensors, BlockGranularity.PerLayer);
        Assert.That(layers.Blocks.Select(b => b.Name), Is.EqualTo(new[]
        {
            "vision_model.embeddings.patch_embedding.weight", "vision_model.encoder.layers.0",
            "vision_model.encoder.layers.1", "visual.transformer.resblocks.11",
        }));
        Assert.That(layers.BlocksOf("vision_model.encoder.layers.0.mlp.fc1.bias"), Is.EqualTo(new[] { 1 }));
        var whole = BlockPartition.Create(tensors, BlockGranularity.PerTaskVector);
        Assert.That(whole.Count, Is.EqualTo(1));
        Assert.That(whole.Blocks[0].TensorNames, Has.Count.EqualTo(5));
        Assert.Throws<ArgumentOutOfRangeException>(() => BlockPartition.Create(tensors, BlockGranularity.PerTensor, partsPerTensor: 3));
    }

    [Test]
    public void RandomPartitionsCoverEveryEntryAndAreReproducible()
    {
        var tensors = new[] { new TensorInfo("a", TensorDType.F32, [100, 50]), new TensorInfo("b", TensorDType.F32, [10]) };
        var p = BlockPartition.Create(tensors, BlockGranularity.RandomPartitions, partsPerTensor: 4, seed: 7);
        Assert.That(p.Count, Is.EqualTo(8));
        Assert.That(p.BlocksOf("b"), Is.EqualTo(new[] { 4, 5, 6, 7 }));
        using var idx = p.PartIndex("a", [100, 50])!;
        using var again = BlockPartition.Create(tensors, BlockGranularity.RandomPartitions, 4, seed: 7).PartIndex("a", [100, 50])!;
        using var other = BlockPartition.Create(tensors, BlockGranularity.RandomPartitions, 4, seed: 8).PartIndex("a", [100, 50])!;
        Assert.That(idx.eq(again).all().item<bool>(), Is.True);
        Assert.That(idx.eq(other).all().item<bool>(), Is.False);
        var counts = bincount(idx.reshape(-1), minlength: 4).data<long>().ToArray();
        Assert.That(counts.Sum(), Is.EqualTo(5000));
        Assert.That(counts, Has.All.InRange(1100, 1400), "each of 4 parts gets about a quarter of 5000 entries");
    }

    [Test]
    public void StatisticsMatchHandComputedValues()
    {
        // τ1 = [3, 4 | 0], τ2 = [4, -3 | 0], τ3 = [3, 4 | 5]: |τ1| = 5, |τ2| = 5, |τ3| = √50;
        // cos(1,2) = 0, cos(1,3) = 25/(5·√50) = 1/√2; zeros: τ1 and τ2 have 1 of 3 entries zero.
        var set = new InMemoryTaskVectorSet(["t1", "t2", "t3"],
        [
            new Dictionary<string, Tensor> { ["a"] = tensor(new float[] { 3, 4 }), ["b"] = tensor(new float[] { 0 }) },
            new Dictionary<string, Tensor> { ["a"] = tensor(new float[] { 4, -3 }), ["b"] = tensor(new float[] { 0 }) },
            new Dictionary<string, Tensor> { ["a"] = tensor(new float[] { 3, 4 }), ["b"] = tensor(new float[] { 5 }) },
        ]);
        var s = TaskVectorStatistics.Compute(set);
        Assert.That(s.Norms, Is.EqualTo(new[] { 5, 5, Math.Sqrt(50) }).Within(1e-12));
        Assert.That(s.CosineSimilarity[0, 1], Is.EqualTo(0).Within(1e-12));
        Assert.That(s.CosineSimilarity[0, 2], Is.EqualTo(1 / Math.Sqrt(2)).Within(1e-12));
        Assert.That(s.CosineSimilarity[2, 2], Is.EqualTo(1).Within(1e-12));
        Assert.That(s.Sparsity, Is.EqualTo(new[] { 1 / 3.0, 1 / 3.0, 0 }).Within(1e-12));
        Assert.That(s.TensorNorms["b"], Is.EqualTo(new[] { 0, 0, 5.0 }));
    }

    [Test]
    public void StatisticsOfLargeTensorsMatchAFloat64Reference()
    {
        // Large enough for the vector loops, several blocks and several cores; a tenth of the entries are zero.
        using var scope = NewDisposeScope();
        var gen = new Generator(12);
        long[][] shapes = [[300, 700], [1001]];
        Tensor Task(int t) => randn(shapes[0], generator: gen).mul_(t + 1).mul_(rand(shapes[0], generator: gen).gt(0.1));
        var tasks = Enumerable.Range(0, 3).Select(t => new Dictionary<string, Tensor> { ["w"] = Task(t), ["b"] = randn(shapes[1], generator: gen) }).ToArray();
        using var set = new InMemoryTaskVectorSet(["t0", "t1", "t2"], tasks.Select(d => (IReadOnlyDictionary<string, Tensor>)d).ToArray());
        var s = TaskVectorStatistics.Compute(set, zeroTolerance: 1e-12);

        var flat = stack(tasks.Select(d => cat([d["w"].reshape(-1), d["b"]])).ToArray()).to(ScalarType.Float64);
        var gram = flat.matmul(flat.t());
        for (int i = 0; i < 3; i++)
        {
            double norm = Math.Sqrt(gram[i, i].item<double>());
            Assert.That(s.Norms[i], Is.EqualTo(norm).Within(1e-12 * norm), $"norm {i}");
            Assert.That(s.Sparsity[i], Is.EqualTo(flat[i].abs().le(1e-12).sum().item<long>() / (double)flat.shape[1]).Within(1e-15), $"sparsity {i}");
            for (int j = 0; j < 3; j++)
                Assert.That(s.CosineSimilarity[i, j], Is.EqualTo(gram[i, j].item<double>() / norm / Math.Sqrt(gram[j, j].item<double>())).Within(1e-12), $"cosine {i},{j}");
        }

        Assert.That(s.Sparsity[0], Is.InRange(0.08, 0.12), "the test's premise: about a tenth are zero");
        Assert.That(s.TensorNorms["b"][1], Is.EqualTo(Math.Sqrt(tasks[1]["b"].to(ScalarType.Float64).square().sum().item<double>())).Within(1e-10));
    }

    [Test]
    public void SingularValueEnergyOfRankTwoMatrixReachesOneAtTheSecondValue()
    {
        // diag(3, 4) embedded in 4×3: σ = 4, 3, 0 → energy 16/25, 25/25, 25/25.
        var m = zeros(4, 3);
        m[0, 0] = tensor(3f);
        m[1, 1] = tensor(4f);
        var set = new InMemoryTaskVectorSet(["t"], [new Dictionary<string, Tensor> { ["w"] = m }]);
        var energy = TaskVectorStatistics.CumulativeSingularValueEnergy(set, 0, "w");
        Assert.That(energy, Is.EqualTo(new[] { 0.64, 1.0, 1.0 }).Within(1e-9));
    }

    [TestCase(40, 90)]
    [TestCase(90, 40)]
    public void SingularValueEnergyMatchesAnSvdOfEitherOrientation(int rows, int cols)
    {
        using var scope = NewDisposeScope();
        var m = randn(rows, cols, generator: new Generator(13)).mul_(linspace(0.1, 3, cols).pow(2));
        var set = new InMemoryTaskVectorSet(["t"], [new Dictionary<string, Tensor> { ["w"] = m }]);
        var sigma = linalg.svdvals(m.to(ScalarType.Float64)).square();
        var expected = sigma.cumsum(0).div(sigma.sum()).data<double>().ToArray();
        Assert.That(TaskVectorStatistics.CumulativeSingularValueEnergy(set, 0, "w"), Is.EqualTo(expected).Within(1e-12));
    }
}
