using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Merging;
using Microsoft.ML.TaskVectors.TaskVectors;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Merging;

/// <summary>The streaming merge of files equals a merge computed naively with every model in memory.</summary>
public class StreamingMergeTests
{
    private static Dictionary<string, Tensor> LoadAll(string path)
    {
        using var c = Checkpoint.Open(path);
        return c.Tensors.ToDictionary(t => t.Name, t => c.Read(t.Name));
    }

    private static TaskVectorPool Pool(Checkpoint @base, IEnumerable<Checkpoint> fts) =>
        TaskVectorPool.FromCheckpoints(@base, fts, TensorFilter.ClipVisionTower);

    private static Dictionary<string, Tensor> MergeFiles(TempDirectory dir, string basePath, string[] fts, MergeMethod method)
    {
        using var b = Checkpoint.Open(basePath);
        var cks = fts.Select(Checkpoint.Open).ToArray();
        using (var pool = Pool(b, cks))
        {
            var phases = new List<string>();
            ModelMerger.MergeToFile(b, pool, method, dir.File("merged.safetensors"), new SyncProgress(p => phases.Add(p.Phase)));
            Assert.That(phases, Does.Contain("write"));
        }
        foreach (var c in cks) c.Dispose();
        return LoadAll(dir.File("merged.safetensors"));
    }

    private sealed class SyncProgress(Action<MergeProgress> report) : IProgress<MergeProgress>
    {
        public void Report(MergeProgress value) => report(value);
    }

    [Test]
    public void TaskArithmeticStreamingEqualsNaiveInMemoryMerge()
    {
        using var dir = new TempDirectory();
        var (basePath, fts) = RandomCheckpoints.Write(dir, tasks: 3);
        var merged = MergeFiles(dir, basePath, fts, new TaskArithmetic(0.3));

        var b = LoadAll(basePath);
        var f = fts.Select(LoadAll).ToArray();
        Assert.That(merged.Keys, Is.EquivalentTo(b.Keys), "every base tensor is written");
        foreach (var (name, b0) in b)
        {
            var expected = name.StartsWith("vision_model.") && b0.is_floating_point()
                ? b0 + 0.3 * f.Select(x => x[name] - b0).Aggregate((x, y) => x + y)
                : b0;
            Assert.That(merged[name].dtype, Is.EqualTo(b0.dtype), name);
            Assert.That(merged[name].allclose(expected, rtol: 1e-6, atol: 1e-6), Is.True, name);
        }
        Assert.That(merged["text_model.final_layer_norm.weight"].equal(b["text_model.final_layer_norm.weight"]).all().item<bool>(), Is.True,
            "tensors outside the filter are the base's");
    }

    [Test]
    public void GlobalTiesStreamingEqualsNaiveConcatenatedTies()
    {
        using var dir = new TempDirectory();
        var (basePath, fts) = RandomCheckpoints.Write(dir, tasks: 3, seed: 5);
        var merged = MergeFiles(dir, basePath, fts, new TiesMerging(k: 0.2, lambda: 1.0));

        // Naive TIES: concatenate each task vector, keep entries ≥ the ⌊0.2·d⌋-th largest magnitude,
        // elect signs, average the agreeing kept values.
        var b = LoadAll(basePath);
        var f = fts.Select(LoadAll).ToArray();
        var names = b.Keys.Where(n => n.StartsWith("vision_model.") && b[n].is_floating_point()).OrderBy(n => n, StringComparer.Ordinal).ToArray();
        var flat = stack(f.Select(ft => cat(names.Select(n => (ft[n] - b[n]).reshape(-1)).ToArray())).ToArray()); // [N, d]
        long d = flat.shape[1], keep = (long)Math.Floor(0.2 * d);
        var kept = flat.clone();
        for (int t = 0; t < flat.shape[0]; t++)
        {
            var threshold = flat[t].abs().sort(descending: true).Values[keep - 1];
            kept[t] = where(flat[t].abs() >= threshold, flat[t], zeros_like(flat[t]));
        }
        long offset = 0;
        foreach (var n in names)
        {
            long size = b[n].numel();
            var part = kept.narrow(1, offset, size);
            offset += size;
            var sign = part.sum(dim: 0).sign();
            var majority = sign.sum().sign().item<float>() >= 0 ? 1f : -1f;
            sign = where(sign == 0, full_like(sign, majority), sign);
            var agree = (part.sign() == sign.unsqueeze(0)) & (part != 0);
            var sum = where(agree, part, zeros_like(part)).sum(dim: 0);
            var count = agree.sum(dim: 0).clamp_min(1);
            var expected = b[n] + (sum / count).reshape(b[n].shape);
            Assert.That(merged[n].allclose(expected, rtol: 1e-5, atol: 1e-6), Is.True, n);
        }
    }

    [Test]
    public void HalfPrecisionBaseIsMergedInFloat32AndStoredBackAsHalf()
    {
        using var dir = new TempDirectory();
        var (basePath, fts) = RandomCheckpoints.Write(dir, tasks: 2, dtype: ScalarType.Float16);
        var merged = MergeFiles(dir, basePath, fts, new WeightAveraging());
        var b = LoadAll(basePath);
        var f = fts.Select(LoadAll).ToArray();
        const string name = "vision_model.encoder.layers.0.mlp.fc1.weight";
        var b32 = b[name].to(ScalarType.Float32);
        var expected = (b32 + 0.5 * ((f[0][name].to(ScalarType.Float32) - b32) + (f[1][name].to(ScalarType.Float32) - b32))).to(ScalarType.Float16);
        Assert.That(merged[name].dtype, Is.EqualTo(ScalarType.Float16));
        Assert.That(merged[name].to(ScalarType.Float32).allclose(expected.to(ScalarType.Float32), rtol: 1e-3, atol: 1e-3), Is.True);
    }

    [Test]
    public void MergeRejectsTaskVectorsThatDoNotFitTheBase()
    {
        using var dir = new TempDirectory();
        using var other = tensor(new float[] { 1, 2 });
        var basePath = TaskVectors.TaskVectorTests.Write(dir, "b.safetensors", ("x", zeros(3)));
        var set = new InMemoryTaskVectorSet(["t"], [new Dictionary<string, Tensor> { ["x"] = zeros(2), ["y"] = zeros(1) }]);
        using var b = Checkpoint.Open(basePath);
        var e = Assert.Throws<ArgumentException>(() => ModelMerger.Merge(b, set, new TaskArithmetic()))!;
        Assert.That(e.Message, Does.Contain("'x' has shape [3] in the base but [2]").And.Contain("'y' is not in the base"));
    }
}
