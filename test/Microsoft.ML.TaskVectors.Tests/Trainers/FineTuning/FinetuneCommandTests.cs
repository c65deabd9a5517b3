using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Heads;
using Microsoft.ML.TaskVectors.Runtime;
using Microsoft.ML.TaskVectors.Tests.Cli;
using Microsoft.ML.TaskVectors.Trainers.FineTuning;
using Microsoft.ML.TaskVectors.Trainers.Tasks;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Trainers.FineTuning;

public class FinetuneCommandTests
{
    private TempDirectory _dir = null!;
    private string _model = null!;
    private string _task = null!;

    [OneTimeSetUp]
    public void SetUp()
    {
        _dir = new TempDirectory();
        _model = FineTuningTestData.WriteModel(_dir);
        _task = FineTuningTestData.WriteColourTask(_dir.File("colours"));
    }

    [OneTimeTearDown]
    public void TearDown() => _dir.Dispose();

    [Test]
    public void WritesTheTaskVectorHeadAndCheckpointAsTheLibraryDoes()
    {
        var tau = _dir.File("cli/EuroSAT.safetensors");
        var (code, stdout, error) = CliRunner.Run("finetune", "--model", _model, "--task", $"EuroSAT=imagefolder:{_task}",
            "--steps", "5", "--batch", "6", "--lr", "0.003", "--warmup", "1", "--seed", "4", "--device", "cpu", "--save-checkpoint", "--out", tau);

        Assert.That(code, Is.EqualTo(0), error);
        // 24 images in batches of 6: a full epoch of 4 steps, then 1.
        Assert.That(stdout, Does.Contain("epoch 1/2: loss ").And.Contain("epoch 2/2: loss "));
        Assert.That(stdout, Does.Match(@"EuroSAT: val accuracy \d+\.\d% → \d+\.\d%, test accuracy \d+\.\d% → \d+\.\d% \(pre-trained → fine-tuned\); 5 steps in"));
        Assert.That(error, Does.Contain($"wrote {tau}").And.Contain($"wrote {_dir.File("cli/EuroSAT.head.safetensors")}").And.Contain($"wrote {_dir.File("cli/EuroSAT.model")}"));
        Assert.That(File.Exists(_dir.File("cli/EuroSAT.model/model.safetensors")), Is.True);

        // The same run through the library gives the same task vector and head (EuroSAT's templates: the task name picks them).
        var options = new FineTuningOptions { Steps = 5, BatchSize = 6, LearningRate = 0.003, WarmupSteps = 1, Seed = 4, Device = "cpu" };
        var data = TaskSource.Parse($"EuroSAT=imagefolder:{_task}").Open();
        var expected = _dir.File("lib/EuroSAT.safetensors");
        new FineTuner(options).FineTune(_model, data, expected);
        using var cli = SafetensorsReader.Open(tau);
        using var lib = SafetensorsReader.Open(expected);
        Assert.That(cli.Tensors.Select(t => t.Name), Is.EqualTo(lib.Tensors.Select(t => t.Name)));
        foreach (var info in lib.Tensors)
        {
            using var scope = NewDisposeScope();
            Assert.That(cli.Read(info.Name).eq(lib.Read(info.Name)).all().item<bool>(), Is.True, info.Name);
        }
        using var head = ZeroShotHead.Load(_dir.File("cli/EuroSAT.head.safetensors"));
        Assert.That(head.Templates, Is.EqualTo(PromptTemplates.For("EuroSAT")));
        Assert.That(head.ClassNames, Is.EqualTo(new[] { "blue", "green", "red" }));
    }

    [Test]
    public void LinearHeadWithEpochs_WritesALinearHeadAndNoCheckpoint()
    {
        var tau = _dir.File("linear/digits.safetensors");
        var (code, stdout, error) = CliRunner.Run("finetune", "--model", _model, "--task", $"digits=imagefolder:{_task}", "--head", "linear",
            "--epochs", "1", "--batch", "12", "--device", "cpu", "--out", tau);
        Assert.That(code, Is.EqualTo(0), error);
        Assert.That(stdout, Does.Contain("epoch 1/1"));
        using var head = LinearHead.Load(FineTuner.HeadPathFor(tau));
        Assert.That(head.ClassCount, Is.EqualTo(3));
        Assert.That(Directory.Exists(FineTuner.CheckpointFolderFor(tau)), Is.False);
    }

    private static IEnumerable<TestCaseData> BadArguments()
    {
        TestCaseData Case(string expected, params string[] extra) => new TestCaseData(extra, expected).SetArgDisplayNames(expected);
        yield return Case("--task: Task 'cars': expected NAME=SOURCE", "--task", "cars");
        yield return Case("--task: Task 'cars=tfds:cars': unknown source", "--task", "cars=tfds:cars");
        yield return Case("--head: expected zeroshot or linear, got 'softmax'", "--head", "softmax");
        yield return Case("--epochs must be at least 1, got 0", "--epochs", "0");
        yield return Case("--steps must be at least 1, got 0", "--steps", "0");
        yield return Case("--epochs and --steps: give one or the other, not both", "--epochs", "2", "--steps", "3");
        yield return Case("--batch must be at least 1, got 0", "--batch", "0");
        yield return Case("--lr must be a finite positive number, got 0", "--lr", "0");
        yield return Case("--templates: only a zero-shot head", "--head", "linear", "--templates", "EuroSAT");
        yield return Case("--templates: 'Nowhere' is neither a file nor a known set", "--templates", "Nowhere");
        yield return Case("Cannot parse argument 'many' for option '--epochs'", "--epochs", "many");
    }

    [TestCaseSource(nameof(BadArguments))]
    public void BadArgumentsGiveOneErrorLine(string[] extra, string expected)
    {
        var args = new List<string> { "finetune", "--model", _model, "--out", _dir.File("bad.safetensors") };
        if (!extra.Contains("--task")) args.AddRange(["--task", $"c=imagefolder:{_task}"]);
        args.AddRange(extra);
        var (code, _, error) = CliRunner.Run(args.ToArray());
        Assert.That(code, Is.EqualTo(1));
        Assert.That(error.Trim().Split('\n'), Has.Length.EqualTo(1), error);
        Assert.That(error, Does.Contain(expected));
        Assert.That(File.Exists(_dir.File("bad.safetensors")), Is.False);
    }

    [Test]
    public void MissingInputsGiveOneErrorLine()
    {
        var (code, _, error) = CliRunner.Run("finetune", "--model", "/nonexistent/model", "--task", $"c=imagefolder:{_task}", "--out", _dir.File("x.safetensors"));
        Assert.That((code, error.Trim()), Is.EqualTo((1, "error: --model: no such folder '/nonexistent/model'.")));

        (code, _, error) = CliRunner.Run("finetune", "--model", _model, "--task", "c=imagefolder:/nonexistent/data", "--out", _dir.File("x.safetensors"));
        Assert.That(code, Is.EqualTo(1));
        Assert.That(error.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(error, Does.Contain("no such folder '/nonexistent/data'"));

        if (!ComputeDevice.IsCudaAvailable())
        {
            (code, _, error) = CliRunner.Run("finetune", "--model", _model, "--task", $"c=imagefolder:{_task}", "--device", "cuda", "--out", _dir.File("x.safetensors"));
            Assert.That(code, Is.EqualTo(1));
            Assert.That(error, Does.Contain("The requested device 'cuda' cannot be used"));
        }
    }
}
