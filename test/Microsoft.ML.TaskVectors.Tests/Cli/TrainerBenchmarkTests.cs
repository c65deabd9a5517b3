using System.Text.Json.Nodes;

namespace Microsoft.ML.TaskVectors.Tests.Cli;

public class TrainerBenchmarkTests
{
    private static readonly string[] Measured =
        ["atlas", "prob-task", "atlas-gated", "det-sample", "vi-gaussian", "spike-slab", "vtvc", "adamerging-task", "fine-tuning"];

    [Test]
    public void BenchTrainersOnATinyTowerPrintsOneJsonLineLast()
    {
        var (code, stdout, error) = CliRunner.Run("bench", "trainers", "--arch", "tiny", "--tasks", "2", "--batch", "4", "--steps", "2");
        Assert.That(code, Is.EqualTo(0), error);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var json = JsonNode.Parse(lines[^1])!.AsObject();
        Assert.That(json["benchmark"]!.GetValue<string>(), Is.EqualTo("trainers"));
        Assert.That(json["arch"]!.GetValue<string>(), Is.EqualTo("tiny"));
        var methods = json["methods"]!.AsObject();
        Assert.That(methods.Select(kv => kv.Key), Is.EquivalentTo(Measured));
        foreach (var (name, node) in methods)
        {
            double seconds = node!["step_seconds"]!.GetValue<double>();
            Assert.That(seconds, Is.GreaterThan(0), name);
            Assert.That(node["timed_steps"]!.GetValue<int>(), Is.GreaterThanOrEqualTo(2), name);
            // Batch 4 over 2 tasks: every method trains on 4 images a step.
            Assert.That(node["samples_per_second"]!.GetValue<double>(), Is.EqualTo(4 / seconds).Within(1e-9), name);
            Assert.That(node["ratio_to_fine_tuning"]!.GetValue<double>(),
                Is.EqualTo(seconds / methods["fine-tuning"]!["step_seconds"]!.GetValue<double>()).Within(1e-12), name);
        }
        Assert.That(json["vtvc_step_ratio"]!.GetValue<double>(), Is.EqualTo(methods["vtvc"]!["ratio_to_fine_tuning"]!.GetValue<double>()));
        Assert.That(json["methods"]!["fine-tuning"]!["ratio_to_fine_tuning"]!.GetValue<double>(), Is.EqualTo(1));
    }

    [Test]
    public void BenchTrainersRefusesAnUnknownArchitectureAndATooSmallBatch()
    {
        var (code, _, error) = CliRunner.Run("bench", "trainers", "--arch", "vit-x", "--tasks", "2");
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(error, Does.Contain("--arch").And.Contain("tiny"));
        (code, _, error) = CliRunner.Run("bench", "trainers", "--arch", "tiny", "--tasks", "4", "--batch", "3");
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(error, Does.Contain("--batch"));
    }
}
