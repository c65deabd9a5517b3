using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Merging;
using Microsoft.ML.TaskVectors.TaskVectors;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Merging;

public class LinearMergeWriterTests
{
    private static readonly MergeMethod[] Linear = [new WeightAveraging(), new TaskArithmetic(0.4), new TaskNegation(0.7)];

    private static void AssertSameAsTensorPath(Checkpoint @base, TaskVectorPool pool, MergeMethod method, string fastPath, double tolerance)
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

    [TestCase(ScalarType.Float32, 1e-6)]
    [TestCase(ScalarType.Float16, 2e-3)]
    [TestCase(ScalarType.BFloat16, 2e-2)]
    public void ByteLevelMergesEqualTheTensorPath(ScalarType dtype, double tolerance)
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
            Assert.That(LinearMergeWriter.TryWrite(@base, pool, method, output, null, default), Is.True, method.Name);
            AssertSameAsTensorPath(@base, pool, method, output, tolerance);
        }
        foreach (var s in sources) s.Dispose();
    }

    [Test]
    public void StoredTaskVectorsAddToTheBase()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDirectory();
        var (basePath, finetuned) = RandomCheckpoints.Write(dir, tasks: 2);
        for (int t = 0; t < 2; t++)
            using (var tv = TaskVector.FromFiles(basePath, finetuned[t], TensorFilter.ClipVisionTower))
                tv.Save(dir.File($"tau{t}.safetensors"));
        using var @base = Checkpoint.Open(basePath);
        using var pool = new TaskVectorPool(Enumerable.Range(0, 2).Select(t => TaskVector.Load(dir.File($"tau{t}.safetensors"))).ToArray());
        var method = new TaskArithmetic(0.5);
        Assert.That(LinearMergeWriter.TryWrite(@base, pool, method, dir.File("m.safetensors"), null, default), Is.True);
        AssertSameAsTensorPath(@base, pool, method, dir.File("m.safetensors"), 1e-6);
    }

    [Test]
    public void OtherMethodsAndReducedStorageTakeTheTensorPath()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDirectory();
        var (basePath, finetuned) = RandomCheckpoints.Write(dir, tasks: 2);
        using var @base = Checkpoint.Open(basePath);
        var sources = finetuned.Select(Checkpoint.Open).ToArray();
        using (var pool = TaskVectorPool.FromCheckpoints(@base, sources, TensorFilter.ClipVisionTower))
            Assert.That(LinearMergeWriter.TryWrite(@base, pool, new TiesMerging(), dir.File("t.safetensors"), null, default), Is.False);
        using (var half = TaskVectorPool.FromCheckpoints(@base, sources, TensorFilter.ClipVisionTower, storage: TensorDType.F16))
            Assert.That(LinearMergeWriter.TryWrite(@base, half, new WeightAveraging(), dir.File("h.safetensors"), null, default), Is.False);
        Assert.That(File.Exists(dir.File("t.safetensors")) || File.Exists(dir.File("h.safetensors")), Is.False, "declining writes nothing");
        foreach (var s in sources) s.Dispose();
    }
}
