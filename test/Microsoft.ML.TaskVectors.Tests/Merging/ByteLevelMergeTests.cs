using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Merging;
using Microsoft.ML.TaskVectors.Runtime;
using Microsoft.ML.TaskVectors.TaskVectors;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Merging;

/// <summary>The byte-level path of <see cref="ModelMerger.MergeToFile"/> against the tensor path it replaces.</summary>
public class ByteLevelMergeTests
{
    private static readonly MergeMethod[] Linear = [new WeightAveraging(), new TaskArithmetic(0.4), new TaskNegation(0.7)];

    private const string Large = "vision_model.encoder.layers.1.mlp.fc2.weight";

    /// <summary>The test layout plus one tensor large enough to be ranked by histograms and split over the cores.</summary>
    private static readonly (string Name, long[] Shape)[] LayoutWithLargeTensor = [.. RandomCheckpoints.Layout, (Large, [512, 300])];

    /// <summary>Every kernel the byte-level path runs: TIES's rankings and aggregations, DARE over task arithmetic and TIES.</summary>
    private static (string Label, Func<MergeMethod> Create)[] KernelMethods() =>
    [
        ("ties global dis-mean", () => new TiesMerging(k: 0.3, lambda: 0.8)),
        ("ties global dis-sum", () => new TiesMerging(k: 0.3, lambda: 0.8, aggregation: TiesAggregation.DisjointSum)),
        ("ties per-tensor dis-mean", () => new TiesMerging(k: 0.25, ranking: TiesRanking.PerTensor)),
        ("ties per-tensor dis-sum", () => new TiesMerging(k: 0.25, lambda: 0.6, ranking: TiesRanking.PerTensor, aggregation: TiesAggregation.DisjointSum)),
        ("dare-ta", () => new DareMerging(new TaskArithmetic(0.4), p: 0.3, seed: 3)),
        ("dare-ta p = 0", () => new DareMerging(new TaskArithmetic(0.4), p: 0)),
        ("dare-ties global", () => new DareMerging(new TiesMerging(k: 0.3), p: 0.3, seed: 3)),
        ("dare-ties per-tensor dis-sum", () => new DareMerging(new TiesMerging(k: 0.3, ranking: TiesRanking.PerTensor, aggregation: TiesAggregation.DisjointSum), p: 0.5, seed: 4)),
    ];

    /// <summary>
    /// Writes the merge by the byte-level path and by the tensor path (<see cref="ModelMerger.Merge"/>
    /// saved with <see cref="SafetensorsWriter"/>, what MergeToFile did before) and asserts the two
    /// files are identical byte for byte, naming the first tensor that differs.
    /// </summary>
    /// <summary>
    /// Saves τt = θt − θ0 of each fine-tuned file (the vision tower) as a task-vector file stored in
    /// <paramref name="stored"/>, and returns a pool of them loaded back, held in <paramref name="poolStorage"/>.
    /// </summary>
    private static TaskVectorPool StoredPool(TempDirectory dir, string basePath, string[] finetuned,
        TensorDType stored = TensorDType.F32, TensorDType poolStorage = TensorDType.F32)
    {
        for (int t = 0; t < finetuned.Length; t++)
        {
            using var tv = TaskVector.FromFiles(basePath, finetuned[t], TensorFilter.ClipVisionTower);
            tv.Save(dir.File($"tau{t}.safetensors"), stored);
        }

        return new TaskVectorPool(Enumerable.Range(0, finetuned.Length).Select(t => TaskVector.Load(dir.File($"tau{t}.safetensors"))).ToArray(), poolStorage);
    }

    private static void AssertSameFileAsTensorPath(TempDirectory dir, Checkpoint @base, TaskVectorPool pool, Func<MergeMethod> create, string label)
    {
        var bytes = dir.File("bytes.safetensors");
        var tensors = dir.File("tensors.safetensors");
        Assert.That(ModelMerger.TryMergeBytes(@base, pool, create(), bytes, null, default), Is.True, $"{label} takes the byte-level path");
        using (var merged = ModelMerger.Merge(@base, pool, create()))
        {
            SafetensorsWriter.Save(merged, tensors);
        }

        using (var a = SafetensorsReader.Open(bytes))
        using (var b = SafetensorsReader.Open(tensors))
        {
            Assert.That(a.Tensors, Is.EqualTo(b.Tensors).Using<TensorInfo>((x, y) => x.Name == y.Name && x.HasSameLayout(y)), label);
            Assert.That(a.Metadata, Is.EqualTo(b.Metadata), label);
            foreach (var info in a.Tensors)
            {
                var x = new byte[info.ByteLength];
                var y = new byte[info.ByteLength];
                a.ReadBytes(info.Name, x);
                b.ReadBytes(info.Name, y);
                int first = x.AsSpan().CommonPrefixLength(y);
                Assert.That(first, Is.EqualTo(x.Length), $"{label}: '{info.Name}' first differs at byte {first}");
            }
        }

        Assert.That(File.ReadAllBytes(bytes).AsSpan().SequenceEqual(File.ReadAllBytes(tensors)), Is.True, $"{label}: the files are identical");
        File.Delete(bytes);
        File.Delete(tensors);
    }

    /// <summary>Asserts the merge changed the large tensor: the comparison above is not of two copies of the base.</summary>
    private static void AssertChangesTheBase(TempDirectory dir, Checkpoint @base, TaskVectorPool pool, MergeMethod method)
    {
        var path = dir.File("check.safetensors");
        ModelMerger.MergeToFile(@base, pool, method, path);
        using var merged = Checkpoint.Open(path);
        using var a = merged.ReadFloat32(Large);
        using var b = @base.ReadFloat32(Large);
        Assert.That(a.ne(b).sum().item<long>(), Is.GreaterThan(1000), method.Name);
    }

    [TestCase(ScalarType.Float32)]
    [TestCase(ScalarType.Float16)]
    [TestCase(ScalarType.BFloat16)]
    public void TiesAndDareFromFineTunedFilesEqualTheTensorPathBitForBit(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDirectory();
        var (basePath, finetuned) = RandomCheckpoints.Write(dir, tasks: 3, dtype, seed: 7, layout: LayoutWithLargeTensor);
        using var @base = Checkpoint.Open(basePath);
        var sources = finetuned.Select(Checkpoint.Open).ToArray();
        using var pool = TaskVectorPool.FromCheckpoints(@base, sources, TensorFilter.ClipVisionTower);
        foreach (var (label, create) in KernelMethods())
        {
            AssertSameFileAsTensorPath(dir, @base, pool, create, $"{label}, {dtype}");
        }

        AssertChangesTheBase(dir, @base, pool, new TiesMerging());
        foreach (var s in sources) s.Dispose();
    }

    [TestCase(ScalarType.Float32)]
    [TestCase(ScalarType.BFloat16)]
    public void TiesOverSampledTensorsEqualsTheTensorPathBitForBit(ScalarType dtype)
    {
        // Over MagnitudeThreshold.SampledFrom entries (the model, and one tensor on its own): the byte-level path samples ranges of the files.
        using var scope = NewDisposeScope();
        using var dir = new TempDirectory();
        var (basePath, finetuned) = RandomCheckpoints.Write(dir, tasks: 2, dtype, seed: 9, layout: [.. LayoutWithLargeTensor, ("vision_model.encoder.layers.2.mlp.fc1.weight", [1100, 1000])]);
        using var @base = Checkpoint.Open(basePath);
        var sources = finetuned.Select(Checkpoint.Open).ToArray();
        using var pool = TaskVectorPool.FromCheckpoints(@base, sources, TensorFilter.ClipVisionTower);
        Assert.That(pool.TensorNames.Sum(n => pool.GetShape(n).Aggregate(1L, (a, b) => a * b)), Is.GreaterThan(MagnitudeThreshold.SampledFrom));
        AssertSameFileAsTensorPath(dir, @base, pool, () => new TiesMerging(k: 0.2), $"ties global, {dtype}");
        AssertSameFileAsTensorPath(dir, @base, pool, () => new DareMerging(new TiesMerging(k: 0.3), p: 0.3, seed: 5), $"dare-ties global, {dtype}");
        AssertSameFileAsTensorPath(dir, @base, pool, () => new TiesMerging(k: 0.2, ranking: TiesRanking.PerTensor), $"ties per-tensor, {dtype}");
        AssertSameFileAsTensorPath(dir, @base, pool, () => new DareMerging(new TiesMerging(k: 0.3, ranking: TiesRanking.PerTensor), p: 0.3, seed: 5), $"dare-ties per-tensor, {dtype}");
        foreach (var s in sources) s.Dispose();
    }

    /// <summary>Rewrites a checkpoint file as a Hugging Face folder of two shards and an index.</summary>
    private static string Shard(TempDirectory dir, string file, string folder)
    {
        var path = dir.File(folder);
        Directory.CreateDirectory(path);
        using var source = SafetensorsReader.Open(file);
        var names = source.Tensors.Select(t => t.Name).ToArray();
        var shards = new[] { names[..(names.Length / 2)], names[(names.Length / 2)..] };
        var map = new Dictionary<string, string>();
        for (int i = 0; i < 2; i++)
        {
            var shardFile = $"model-0000{i + 1}-of-00002.safetensors";
            var tensors = shards[i].ToDictionary(n => n, n => source.Read(n));
            SafetensorsWriter.Save(Path.Combine(path, shardFile), tensors);
            foreach (var t in tensors.Values) t.Dispose();
            foreach (var n in shards[i]) map[n] = shardFile;
        }

        File.WriteAllText(Path.Combine(path, "model.safetensors.index.json"), System.Text.Json.JsonSerializer.Serialize(new { metadata = new { }, weight_map = map }));
        return path;
    }

    [Test]
    public void ShardedCheckpointsTakeTheByteLevelPathAndEqualTheTensorPath()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDirectory();
        var (basePath, finetuned) = RandomCheckpoints.Write(dir, tasks: 2, ScalarType.Float16, seed: 11, layout: LayoutWithLargeTensor);
        using var @base = Checkpoint.Open(Shard(dir, basePath, "base"));
        var sources = finetuned.Select((f, t) => Checkpoint.Open(Shard(dir, f, $"ft{t}"))).ToArray();
        Assert.That(@base, Is.InstanceOf<ShardedCheckpoint>());
        using var pool = TaskVectorPool.FromCheckpoints(@base, sources, TensorFilter.ClipVisionTower);
        AssertSameFileAsTensorPath(dir, @base, pool, () => new TiesMerging(k: 0.3), "ties, sharded");
        AssertSameFileAsTensorPath(dir, @base, pool, () => new DareMerging(new TaskArithmetic(0.4), p: 0.3, seed: 2), "dare-ta, sharded");
        var output = dir.File("average.safetensors");
        Assert.That(ModelMerger.TryMergeBytes(@base, pool, new WeightAveraging(), output, null, default), Is.True);
        AssertCloseToTensorPath(@base, pool, new WeightAveraging(), output, 2e-3);
        foreach (var s in sources) s.Dispose();
    }

    [TestCase(TensorDType.F32)]
    [TestCase(TensorDType.BF16)]
    public void TiesAndDareFromStoredTaskVectorsEqualTheTensorPathBitForBit(TensorDType stored)
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDirectory();
        var (basePath, finetuned) = RandomCheckpoints.Write(dir, tasks: 3, seed: 8, layout: LayoutWithLargeTensor);
        using var @base = Checkpoint.Open(basePath);
        using var pool = StoredPool(dir, basePath, finetuned, stored);
        foreach (var (label, create) in KernelMethods())
        {
            AssertSameFileAsTensorPath(dir, @base, pool, create, $"{label}, stored {stored}");
        }

        AssertChangesTheBase(dir, @base, pool, new DareMerging(new TiesMerging()));
    }

    [TestCase(TensorDType.F16)]
    [TestCase(TensorDType.BF16)]
    public void PoolsStoredInHalfPrecisionRoundAsThePoolDoes(TensorDType storage)
    {
        // The pool rounds τt = θt − θ0 (or a stored τt) to its storage; the byte-level path rounds its chunks
        // the same way, so the kernels still give the tensor path's bits and the linear methods its values.
        using var scope = NewDisposeScope();
        using var dir = new TempDirectory();
        var (basePath, finetuned) = RandomCheckpoints.Write(dir, tasks: 3, seed: 10, layout: LayoutWithLargeTensor);
        using var @base = Checkpoint.Open(basePath);
        var sources = finetuned.Select(Checkpoint.Open).ToArray();
        using var fromFineTuned = TaskVectorPool.FromCheckpoints(@base, sources, TensorFilter.ClipVisionTower, storage: storage);
        using var fromStored = StoredPool(dir, basePath, finetuned, poolStorage: storage);
        foreach (var (pool, kind) in new[] { (fromFineTuned, "fine-tuned"), (fromStored, "stored τ") })
        {
            foreach (var (label, create) in KernelMethods())
            {
                AssertSameFileAsTensorPath(dir, @base, pool, create, $"{label}, {kind}, {storage} storage");
            }

            foreach (var method in Linear)
            {
                var output = dir.File($"{method.Name}.safetensors");
                Assert.That(ModelMerger.TryMergeBytes(@base, pool, method, output, null, default), Is.True, $"{method.Name}, {kind}");
                AssertCloseToTensorPath(@base, pool, method, output, 1e-6);
            }
        }

        // The rounding is there: F32 storage gives other bits.
        using var exact = TaskVectorPool.FromCheckpoints(@base, sources, TensorFilter.ClipVisionTower);
        ModelMerger.MergeToFile(@base, exact, new TiesMerging(), dir.File("exact.safetensors"));
        ModelMerger.MergeToFile(@base, fromFineTuned, new TiesMerging(), dir.File("rounded.safetensors"));
        using (var a = Checkpoint.Open(dir.File("exact.safetensors")))
        using (var b = Checkpoint.Open(dir.File("rounded.safetensors")))
        {
            Assert.That(a.ReadFloat32(Large).ne(b.ReadFloat32(Large)).sum().item<long>(), Is.GreaterThan(1000));
        }

        foreach (var s in sources) s.Dispose();
    }

    [Test]
    public void ByteLevelMergeReportsBothPhasesAndHonoursCancellation()
    {
        using var dir = new TempDirectory();
        var (basePath, finetuned) = RandomCheckpoints.Write(dir, tasks: 2);
        using var @base = Checkpoint.Open(basePath);
        var sources = finetuned.Select(Checkpoint.Open).ToArray();
        using var pool = TaskVectorPool.FromCheckpoints(@base, sources, TensorFilter.ClipVisionTower);
        var reports = new List<MergeProgress>();
        Assert.That(ModelMerger.TryMergeBytes(@base, pool, new TiesMerging(), dir.File("m.safetensors"), new SynchronousProgress<MergeProgress>(reports.Add), default), Is.True);
        Assert.That(reports.Where(r => r.Phase == "prepare").Select(r => r.Fraction).Last(), Is.EqualTo(1.0));
        Assert.That(reports.Where(r => r.Phase == "write").Select(r => r.Fraction).Last(), Is.EqualTo(1.0));
        Assert.That(reports.FindIndex(r => r.Phase == "write"), Is.GreaterThan(reports.FindLastIndex(r => r.Phase == "prepare")), "prepare comes first");

        // Per-tensor ranking reports its prepare phase tensor by tensor.
        reports.Clear();
        Assert.That(ModelMerger.TryMergeBytes(@base, pool, new TiesMerging(ranking: TiesRanking.PerTensor), dir.File("p.safetensors"),
            new SynchronousProgress<MergeProgress>(reports.Add), default), Is.True);
        var prepare = reports.Where(r => r.Phase == "prepare").Select(r => r.Fraction).ToArray();
        Assert.That(prepare, Is.Ordered);
        Assert.That(prepare[^1], Is.EqualTo(1.0));
        Assert.That(prepare.Distinct().Count(), Is.GreaterThanOrEqualTo(4));

        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.Throws<OperationCanceledException>(() => ModelMerger.MergeToFile(@base, pool, new DareMerging(new TaskArithmetic()), dir.File("c.safetensors"), cancellationToken: cancelled.Token));
        Assert.That(File.Exists(dir.File("c.safetensors")), Is.False, "a cancelled merge leaves no file");
        foreach (var s in sources) s.Dispose();
    }

    private static void AssertCloseToTensorPath(Checkpoint @base, TaskVectorPool pool, MergeMethod method, string fastPath, double tolerance)
    {
        using var fast = Checkpoint.Open(fastPath);
        using var slow = ModelMerger.Merge(@base, pool, method);
        Assert.That(fast.Tensors.Select(t => (t.Name, t.DType)), Is.EqualTo(slow.Tensors.Select(t => (t.Name, t.DType))));
        Assert.That(fast.Metadata["merge_method"], Is.EqualTo(method.Name));
        foreach (var info in @base.Tensors)
        {
            using var a = fast.Read(info.Name);
            using var b = slow.Read(info.Name);
            if (!slow.IsMerged(info.Name) || !info.DType.IsFloatingPoint())
                Assert.That(a.eq(b).all().item<bool>(), Is.True, $"{info.Name} is copied byte for byte");
            else
                Assert.That(a.to(ScalarType.Float32).allclose(b.to(ScalarType.Float32), rtol: tolerance, atol: tolerance), Is.True, $"{method.Name}: {info.Name}");
        }
    }

    // The linear methods combine θ0 and θt with their weights in one pass, where the tensor path forms
    // Σ θt − N·θ0: the same value up to float32 rounding.
    [TestCase(ScalarType.Float32, 1e-6)]
    [TestCase(ScalarType.Float16, 2e-3)]
    [TestCase(ScalarType.BFloat16, 2e-2)]
    public void LinearMergesEqualTheTensorPath(ScalarType dtype, double tolerance)
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDirectory();
        var (basePath, finetuned) = RandomCheckpoints.Write(dir, tasks: 3, dtype);
        using var @base = Checkpoint.Open(basePath);
        var sources = finetuned.Select(Checkpoint.Open).ToArray();
        using var pool = TaskVectorPool.FromCheckpoints(@base, sources, TensorFilter.ClipVisionTower);
        foreach (var method in Linear)
        {
            var output = dir.File($"{method.Name}.safetensors");
            Assert.That(ModelMerger.TryMergeBytes(@base, pool, method, output, null, default), Is.True, method.Name);
            AssertCloseToTensorPath(@base, pool, method, output, tolerance);
        }
        foreach (var s in sources) s.Dispose();
    }

    [Test]
    public void StoredTaskVectorsAddToTheBase()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDirectory();
        var (basePath, finetuned) = RandomCheckpoints.Write(dir, tasks: 2);
        using var @base = Checkpoint.Open(basePath);
        using var pool = StoredPool(dir, basePath, finetuned);
        var method = new TaskArithmetic(0.5);
        Assert.That(ModelMerger.TryMergeBytes(@base, pool, method, dir.File("m.safetensors"), null, default), Is.True);
        AssertCloseToTensorPath(@base, pool, method, dir.File("m.safetensors"), 1e-6);
    }

    [Test]
    public void OtherMethodsAndInputsTakeTheTensorPath()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDirectory();
        var (basePath, finetuned) = RandomCheckpoints.Write(dir, tasks: 2);
        using var @base = Checkpoint.Open(basePath);
        using var otherBase = Checkpoint.Open(basePath);
        var sources = finetuned.Select(Checkpoint.Open).ToArray();
        var output = dir.File("out.safetensors");
        void Declines(Checkpoint b, ITaskVectorSet set, MergeMethod method, string why)
        {
            Assert.That(ModelMerger.TryMergeBytes(b, set, method, output, null, default), Is.False, why);
            Assert.That(File.Exists(output), Is.False, $"{why}: declining writes nothing");
            // MergeToFile still merges, by the tensor path: what ModelMerger.Merge gives.
            ModelMerger.MergeToFile(b, set, method, output);
            using (var written = Checkpoint.Open(output))
            using (var expected = ModelMerger.Merge(b, set, method))
            {
                foreach (var info in expected.Tensors)
                {
                    using var x = written.Read(info.Name);
                    using var y = expected.Read(info.Name);
                    Assert.That(x.eq(y).all().item<bool>(), Is.True, $"{why}: {info.Name}");
                }
            }

            File.Delete(output);
        }

        using (var pool = TaskVectorPool.FromCheckpoints(@base, sources, TensorFilter.ClipVisionTower))
        {
            Declines(@base, pool, new TsvMerging(), "a method with neither linear weights nor a kernel");
            Declines(@base, pool, new DareMerging(new WeightAveraging()), "DARE over a method without a kernel");
            Declines(otherBase, pool, new TiesMerging(), "task vectors over another base checkpoint");
        }

        using (var memory = new InMemoryTaskVectorSet(["a", "b"], Enumerable.Range(0, 2).Select(t =>
            (IReadOnlyDictionary<string, Tensor>)new Dictionary<string, Tensor> { ["vision_model.post_layernorm.weight"] = full(8, 0.1f * (t + 1)) }).ToArray()))
        {
            Declines(@base, memory, new DareMerging(new TiesMerging(), p: 0.2), "task vectors that are not files");
        }

        foreach (var s in sources) s.Dispose();
    }
}
