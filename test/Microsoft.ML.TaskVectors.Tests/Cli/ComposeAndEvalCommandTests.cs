using System.Text.Json.Nodes;
using Microsoft.ML.TaskVectors.Tests.Trainers.FineTuning;
using Microsoft.ML.TaskVectors.Trainers.Composition;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Cli;

public class ComposeAndEvalCommandTests
{
    private TempDirectory _dir = null!;
    private string _model = null!;
    private string[] _taus = null!;
    private string[] _tasks = null!;

    [OneTimeSetUp]
    public void FineTuneTwoTasks()
    {
        _dir = new TempDirectory();
        _model = FineTuningTestData.WriteModel(_dir);
        _taus = new string[2];
        _tasks = new string[2];
        for (int t = 0; t < 2; t++)
        {
            var data = FineTuningTestData.WriteColourTask(_dir.File($"data{t}"), train: 6, val: 4, test: 3, seed: 10 + t);
            _tasks[t] = $"task{t}=imagefolder:{data}";
            _taus[t] = _dir.File($"tau{t}.safetensors");
            var (code, _, error) = CliRunner.Run("finetune", "--model", _model, "--task", _tasks[t], "--steps", "4", "--batch", "6",
                "--lr", "1e-3", "--head", "linear", "--seed", $"{t}", "--out", _taus[t]);
            Assert.That(code, Is.EqualTo(0), error);
        }
    }

    [OneTimeTearDown]
    public void TearDown() => _dir.Dispose();

    [Test]
    public void WudiComposesWithoutDataAndEvaluatesButHasNoCoefficientsToDump()
    {
        var state = _dir.File("state-wudi");
        var (code, _, error) = CliRunner.Run(["compose", "--method", "wudi", "--model", _model, "--task-vectors", _taus[0], _taus[1],
            "--task", _tasks[0], _tasks[1], "--epochs", "1", "--out", state]);
        Assert.That(code, Is.EqualTo(0), error);
        (code, _, error) = CliRunner.Run("eval", "--state", state, "--task", _tasks[0], _tasks[1], "--json", _dir.File("wudi.json"));
        Assert.That(code, Is.EqualTo(0), error);
        var json = JsonNode.Parse(File.ReadAllText(_dir.File("wudi.json")))!.AsObject();
        Assert.That(json["gated_ratio"], Is.Null);
        Assert.That(json["mean_accuracy"]!.GetValue<double>(), Is.InRange(0.0, 1.0));
        (code, _, error) = CliRunner.Run("eval", "--state", state, "--task", _tasks[0], _tasks[1], "--coefficients", _dir.File("wudi.coefficients.safetensors"));
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(error, Does.Contain("no composition coefficients").And.Not.Contain("   at "));
    }

    [TestCase("atlas", false)]
    [TestCase("vtvc", true)]
    [TestCase("atlas-gated", true)]
    [TestCase("adamerging-task", false)]
    public void ComposeThenEvalWritesTheDocumentedJson(string method, bool gated)
    {
        var state = _dir.File($"state-{method}");
        var (code, _, error) = CliRunner.Run(["compose", "--method", method, "--model", _model, "--task-vectors", _taus[0], _taus[1],
            "--task", _tasks[0], _tasks[1], "--epochs", "2", "--batch", "6", "--out", state]);
        Assert.That(code, Is.EqualTo(0), error);
        Assert.That(File.Exists(Path.Combine(state, CompositionState.ManifestFile)), Is.True);

        (code, var stdout, error) = CliRunner.Run("eval", "--state", state, "--task", _tasks[1], _tasks[0], "--json", _dir.File($"{method}.json"),
            "--coefficients", _dir.File($"{method}.coefficients.safetensors"));
        Assert.That(code, Is.EqualTo(0), error);
        Assert.That(stdout, Does.Contain("mean"));
        var json = JsonNode.Parse(File.ReadAllText(_dir.File($"{method}.json")))!.AsObject();
        var tasks = json["tasks"]!.AsObject();
        Assert.That(tasks.Select(kv => kv.Key), Is.EquivalentTo(new[] { "task0", "task1" }));
        var accuracies = tasks.Select(kv => kv.Value!["accuracy"]!.GetValue<double>()).ToArray();
        Assert.That(accuracies.All(a => a is >= 0 and <= 1), Is.True);
        Assert.That(json["mean_accuracy"]!.GetValue<double>(), Is.EqualTo(accuracies.Average()).Within(1e-12));
        Assert.That(json["gated_ratio"] is null, Is.EqualTo(!gated));
        if (gated) Assert.That(json["gated_ratio"]!.GetValue<double>(), Is.InRange(0.0, 1.0));
        using (var dump = Microsoft.ML.TaskVectors.Checkpoints.Checkpoint.Open(_dir.File($"{method}.coefficients.safetensors")))
        {
            var z = dump.GetInfo("task0.coefficients").Shape;
            Assert.That(z[0], Is.EqualTo(9), "one row per test image (3 classes × 3)");
            Assert.That(z[1], Is.EqualTo(2));
            Assert.That(dump.Contains("task1.gates"), Is.EqualTo(gated));
            Assert.That(dump.Contains("task1.uncertainty"), Is.EqualTo(method == "vtvc"));
            if (gated)
            {
                // The gated ratio in the JSON is the mean of the dumped gates.
                using var g = dump.Read("task1.gates");
                Assert.That(g.to(TorchSharp.torch.ScalarType.Float64).mean().item<double>(), Is.EqualTo(tasks["task1"]!["gated_ratio"]!.GetValue<double>()).Within(1e-9));
            }
        }

        // Loading then scoring again gives the same answers.
        (code, _, error) = CliRunner.Run("eval", "--state", state, "--task", _tasks[0], _tasks[1], "--json", _dir.File($"{method}-2.json"));
        Assert.That(code, Is.EqualTo(0), error);
        Assert.That(File.ReadAllText(_dir.File($"{method}-2.json")), Is.EqualTo(File.ReadAllText(_dir.File($"{method}.json"))));
    }

    [Test]
    public void ProceduralSourcesGoThroughFinetuneComposeAndEval()
    {
        // Generated tasks need no files: the same NAME=procedural:… text gives the same images to every command.
        string[] tasks = ["shapes=procedural:shapes,train=3,val=2,test=2,size=16,seed=5", "stripes=procedural:stripes,train=3,val=2,test=2,size=16"];
        var taus = new string[2];
        for (int t = 0; t < 2; t++)
        {
            taus[t] = _dir.File($"procedural{t}.safetensors");
            var (code, stdout, error) = CliRunner.Run("finetune", "--model", _model, "--task", tasks[t], "--steps", "2", "--batch", "6",
                "--head", "linear", "--out", taus[t]);
            Assert.That(code, Is.EqualTo(0), error);
            Assert.That(stdout, Does.Contain(t == 0 ? "shapes: val accuracy" : "stripes: val accuracy").And.Contain("test accuracy"));
        }
        var state = _dir.File("state-procedural");
        var (composeCode, _, composeError) = CliRunner.Run(["compose", "--method", "atlas", "--model", _model, "--task-vectors", taus[0], taus[1],
            "--task", tasks[0], tasks[1], "--epochs", "1", "--batch", "6", "--out", state]);
        Assert.That(composeCode, Is.EqualTo(0), composeError);
        var (evalCode, _, evalError) = CliRunner.Run("eval", "--state", state, "--task", tasks[0], tasks[1], "--json", _dir.File("procedural.json"),
            "--coefficients", _dir.File("procedural.coefficients.safetensors"));
        Assert.That(evalCode, Is.EqualTo(0), evalError);
        var json = JsonNode.Parse(File.ReadAllText(_dir.File("procedural.json")))!.AsObject();
        Assert.That(json["tasks"]!.AsObject().Select(kv => kv.Key), Is.EquivalentTo(new[] { "shapes", "stripes" }));
        using var dump = Microsoft.ML.TaskVectors.Checkpoints.Checkpoint.Open(_dir.File("procedural.coefficients.safetensors"));
        Assert.That(dump.GetInfo("shapes.coefficients").Shape[0], Is.EqualTo(12), "one row per test image (6 classes × 2)");
        Assert.That(dump.GetInfo("stripes.coefficients").Shape[0], Is.EqualTo(8), "4 classes × 2");

        // A mistake in the family is reported before anything is loaded.
        var (badCode, _, badError) = CliRunner.Run("finetune", "--model", _model, "--task", "x=procedural:circles", "--out", _dir.File("never.safetensors"));
        Assert.That(badCode, Is.EqualTo(1));
        Assert.That(badError, Does.Contain("--task: Task 'x=procedural:circles': Unknown procedural task family 'circles'; the families are shapes, stripes"));
    }

    [Test]
    public void EvalRefusesAChangedTaskVectorAndMissingTasks()
    {
        var state = _dir.File("state-check");
        var (code, _, error) = CliRunner.Run(["compose", "--method", "atlas", "--model", _model, "--task-vectors", _taus[0], _taus[1],
            "--task", _tasks[0], _tasks[1], "--epochs", "1", "--batch", "6", "--out", state]);
        Assert.That(code, Is.EqualTo(0), error);
        (code, _, error) = CliRunner.Run("eval", "--state", state, "--task", _tasks[0]);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(error, Does.Contain("task1"));
        (code, _, error) = CliRunner.Run(["compose", "--method", "atlas", "--model", _model, "--task-vectors", _taus[0], "--task", _tasks[0], _tasks[1], "--out", state]);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(error, Does.Contain("1 task vector(s) for 2 --task(s)"));
    }
}
