using System.Text.Json;
using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Runtime;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Cli;

public class MergeAndInspectCommandTests
{
    [Test]
    public void MergeWritesACompleteCheckpointEqualToTheLibraryMerge()
    {
        using var dir = new TempDirectory();
        var (basePath, fts) = RandomCheckpoints.Write(dir, tasks: 2);
        var output = dir.File("out/merged.safetensors");
        var (code, stdout, stderr) = CliRunner.Run(["merge", "--method", "task-arithmetic", "--base", basePath, "--finetuned", .. fts,
            "--lambda", "0.5", "--tensors", "clip-vision", "--out", output]);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("task-arithmetic: merged 2 task vector(s)"));

        using var merged = Checkpoint.Open(output);
        using var b = Checkpoint.Open(basePath);
        using var f0 = Checkpoint.Open(fts[0]);
        using var f1 = Checkpoint.Open(fts[1]);
        Assert.That(merged.Tensors.Select(t => t.Name), Is.EqualTo(b.Tensors.Select(t => t.Name)));
        const string name = "vision_model.encoder.layers.0.mlp.fc1.weight";
        using var scope = NewDisposeScope();
        var expected = b.ReadFloat32(name) + 0.5 * (f0.ReadFloat32(name) - b.ReadFloat32(name) + f1.ReadFloat32(name) - b.ReadFloat32(name));
        Assert.That(merged.ReadFloat32(name).allclose(expected, rtol: 1e-6, atol: 1e-6), Is.True);
        Assert.That(merged.ReadFloat32("text_model.final_layer_norm.weight").equal(b.ReadFloat32("text_model.final_layer_norm.weight")).all().item<bool>(),
            Is.True, "--tensors clip-vision leaves the text tower alone");
        Assert.That(merged.Metadata["merge_method"], Is.EqualTo("task-arithmetic"));
    }

    [TestCase("ties")]
    [TestCase("dare-ties")]
    [TestCase("dare-ta")]
    [TestCase("tsv")]
    [TestCase("average")]
    [TestCase("negate")]
    [TestCase("wudi")]
    public void EveryMethodRunsFromTheCommandLine(string method)
    {
        using var dir = new TempDirectory();
        var (basePath, fts) = RandomCheckpoints.Write(dir, tasks: 2);
        var output = dir.File("m.safetensors");
        var (code, _, stderr) = CliRunner.Run(["merge", "--method", method, "--base", basePath, "--finetuned", .. fts, "--out", output, "--seed", "3", "--wudi-steps", "20"]);
        Assert.That(code, Is.EqualTo(0), stderr);
        using var merged = Checkpoint.Open(output);
        using var b = Checkpoint.Open(basePath);
        using var scope = NewDisposeScope();
        const string name = "vision_model.encoder.layers.1.self_attn.q_proj.weight";
        Assert.That(merged.ReadFloat32(name).equal(b.ReadFloat32(name)).all().item<bool>(), Is.False, "the merge changed the weights");
    }

    [Test]
    public void BadInputGivesOneLineAndNonZeroExit()
    {
        using var dir = new TempDirectory();
        var (basePath, _) = RandomCheckpoints.Write(dir, tasks: 1);
        var missing = dir.File("nope.safetensors");
        var (code, _, stderr) = CliRunner.Run(["merge", "--method", "ties", "--base", basePath, "--finetuned", missing, "--out", dir.File("o.safetensors")]);
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(stderr, Does.Contain(missing));
        Assert.That(stderr.Trim().Split('\n'), Has.Length.EqualTo(1), "one line, no stack trace");
        Assert.That(File.Exists(dir.File("o.safetensors")), Is.False);
    }

    [Test]
    public void InvalidOptionValueIsRejectedBeforeAnyWork()
    {
        using var dir = new TempDirectory();
        var (basePath, fts) = RandomCheckpoints.Write(dir, tasks: 1);
        var (code, _, stderr) = CliRunner.Run(["merge", "--method", "ties", "--k", "1.5", "--base", basePath, "--finetuned", .. fts, "--out", dir.File("o.safetensors")]);
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(stderr, Does.Contain("k"));
        var (code2, _, stderr2) = CliRunner.Run(["merge", "--method", "magic", "--base", basePath, "--finetuned", .. fts, "--out", dir.File("o.safetensors")]);
        Assert.That(code2, Is.Not.EqualTo(0));
        Assert.That(stderr2, Does.Contain("magic"));
    }

    [Test]
    public void AnExplicitDeviceThatCannotBeUsedIsRefused()
    {
        using var dir = new TempDirectory();
        var (basePath, fts) = RandomCheckpoints.Write(dir, tasks: 2);
        var output = dir.File("o.safetensors");
        var (bad, _, badError) = CliRunner.Run(["merge", "--method", "tsv", "--device", "gpu", "--base", basePath, "--finetuned", .. fts, "--out", output]);
        Assert.That(bad, Is.Not.EqualTo(0));
        Assert.That(badError, Does.Contain("'gpu'"));
        var (cpu, _, cpuError) = CliRunner.Run(["merge", "--method", "tsv", "--device", "cpu", "--base", basePath, "--finetuned", .. fts, "--out", output]);
        Assert.That(cpu, Is.EqualTo(0), cpuError);

        Assume.That(ComputeDevice.IsCudaAvailable(), Is.False, "the rest is about a machine without CUDA");
        File.Delete(output);
        var (code, _, stderr) = CliRunner.Run(["merge", "--method", "wudi", "--device", "cuda", "--base", basePath, "--finetuned", .. fts, "--out", output]);
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(stderr, Does.Contain("'cuda' cannot be used"));
        Assert.That(stderr.Trim().Split('\n'), Has.Length.EqualTo(1), "one line, no stack trace");
        Assert.That(File.Exists(output), Is.False);
    }

    [Test]
    public void InspectPrintsTablesWithShapesAndTheCosineMatrix()
    {
        using var dir = new TempDirectory();
        var (basePath, fts) = RandomCheckpoints.Write(dir, tasks: 2);
        var (code, stdout, stderr) = CliRunner.Run(["inspect", .. fts, "--base", basePath, "--tensors", "clip-vision", "--energy"]);
        Assert.That(code, Is.EqualTo(0), stderr);
        using var b = Checkpoint.Open(basePath);
        var shaped = b.Tensors.First(t => t.Shape.Length == 2);
        Assert.That(stdout, Does.Contain(shaped.ShapeText), "shapes print as text, not as markup");
        Assert.That(stdout, Does.Contain("cosine similarity").And.Contain("1.0000").And.Contain("singular values holding"));
    }

    [Test]
    public void InspectReportsTensorsNormsAndCosines()
    {
        using var dir = new TempDirectory();
        var (basePath, fts) = RandomCheckpoints.Write(dir, tasks: 2);
        var (code, stdout, stderr) = CliRunner.Run(["inspect", .. fts, "--base", basePath, "--tensors", "clip-vision", "--json"]);
        Assert.That(code, Is.EqualTo(0), stderr);
        using var doc = JsonDocument.Parse(stdout);
        var first = doc.RootElement.GetProperty("checkpoints")[0];
        Assert.That(first.GetProperty("tensors").GetArrayLength(), Is.EqualTo(RandomCheckpoints.Layout.Length));
        var tv = doc.RootElement.GetProperty("task_vectors");
        Assert.That(tv.GetProperty("tasks").EnumerateArray().Select(e => e.GetString()), Is.EqualTo(new[] { "ft0", "ft1" }));

        // Independent check of the first norm: ‖ft0 − base‖ over the vision tower's float tensors.
        using var b = Checkpoint.Open(basePath);
        using var f = Checkpoint.Open(fts[0]);
        double sq = 0;
        foreach (var t in b.Tensors.Where(t => t.Name.StartsWith("vision_model.") && t.DType.IsFloatingPoint()))
        {
            using var d = f.ReadFloat32(t.Name) - b.ReadFloat32(t.Name);
            sq += d.to(ScalarType.Float64).square().sum().item<double>();
        }
        Assert.That(tv.GetProperty("norms")[0].GetDouble(), Is.EqualTo(Math.Sqrt(sq)).Within(1e-9));
        Assert.That(tv.GetProperty("cosine")[1][1].GetDouble(), Is.EqualTo(1.0).Within(1e-12));
        Assert.That(Math.Abs(tv.GetProperty("cosine")[0][1].GetDouble()), Is.LessThan(0.5), "independent random task vectors are far from parallel");
    }

    [Test]
    public void InspectEnergyFindsTheRankOfLowRankTaskVectors()
    {
        using var dir = new TempDirectory();
        // τ = u·vᵀ (rank 1) for the 8×6 tensor; the 1-D bias has no singular values and is skipped.
        using var u = arange(1, 9, dtype: ScalarType.Float32).reshape(8, 1);
        using var v = arange(1, 7, dtype: ScalarType.Float32).reshape(1, 6);
        var basePath = TaskVectors.TaskVectorTests.Write(dir, "base.safetensors", ("w", zeros(8, 6)), ("b", zeros(8)));
        var ftPath = TaskVectors.TaskVectorTests.Write(dir, "ft.safetensors", ("w", u.matmul(v)), ("b", ones(8)));
        var (code, stdout, stderr) = CliRunner.Run(["inspect", ftPath, "--base", basePath, "--energy", "--json"]);
        Assert.That(code, Is.EqualTo(0), stderr);
        using var doc = JsonDocument.Parse(stdout);
        var rows = doc.RootElement.GetProperty("task_vectors").GetProperty("energy").EnumerateArray().ToArray();
        Assert.That(rows, Has.Length.EqualTo(1));
        Assert.That(rows[0].GetProperty("tensor").GetString(), Is.EqualTo("w"));
        Assert.That(rows[0].GetProperty("rank").GetInt32(), Is.EqualTo(6));
        Assert.That(rows[0].GetProperty("k99").GetInt32(), Is.EqualTo(1));

        var (code2, _, stderr2) = CliRunner.Run(["inspect", ftPath, "--energy"]);
        Assert.That(code2, Is.Not.EqualTo(0));
        Assert.That(stderr2, Does.Contain("--energy needs --base"));
    }
}
