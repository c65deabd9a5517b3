using System.Text.Json;
using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Cli.Commands;
using Microsoft.ML.TaskVectors.Cli.Demo;
using Microsoft.ML.TaskVectors.Merging;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Demo;

/// <summary>The merge demo: a deterministic suite, real training, real merges through files, and faithful reports.</summary>
public class MergeDemoTests
{
    private static MergeDemoOptions Small(string work, long seed = 11) => new()
    {
        Tasks = 3,
        Seed = seed,
        FineTuneSteps = 150,
        WorkDirectory = work,
    };

    private static bool Same(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        return a.shape.SequenceEqual(b.shape) && a.dtype == b.dtype && a.eq(b).all().item<bool>();
    }

    // One demo run shared by the assertions below (it is the slow part).
    private TempDirectory _work = null!;
    private MergeDemoResult _result = null!;

    [OneTimeSetUp]
    public void RunDemoOnce()
    {
        _work = new TempDirectory();
        _result = MergeDemo.Run(Small(_work.Path));
    }

    [OneTimeTearDown]
    public void Cleanup() => _work.Dispose();

    [Test]
    public void Suite_SameSeedGivesIdenticalTensors_DifferentSeedDoesNot()
    {
        var options = new SyntheticTaskSuiteOptions { Tasks = 3, Seed = 5, TrainPerClass = 20, ValidationPerClass = 10, TestPerClass = 10 };
        using var a = SyntheticTaskSuite.Create(options);
        using var b = SyntheticTaskSuite.Create(options);
        options.Seed = 6;
        using var c = SyntheticTaskSuite.Create(options);
        foreach (var split in Enum.GetValues<DemoSplit>())
            for (int t = 0; t < 3; t++)
            {
                Assert.That(Same(a.Get(t, split).Inputs, b.Get(t, split).Inputs), Is.True, $"{split} inputs of task {t}");
                Assert.That(Same(a.Get(t, split).Labels, b.Get(t, split).Labels), Is.True, $"{split} labels of task {t}");
                Assert.That(Same(a.Get(t, split).Inputs, c.Get(t, split).Inputs), Is.False, $"{split} inputs of task {t} ignore the seed");
            }
        // Tasks really differ from one another, and every class is present in equal numbers.
        Assert.That(Same(a.Get(0, DemoSplit.Train).Inputs, a.Get(1, DemoSplit.Train).Inputs), Is.False);
        Assert.That(a.Get(0, DemoSplit.Train).Labels.bincount(null).data<long>().ToArray(), Is.All.EqualTo(20));
        Assert.That(a.Get(0, DemoSplit.Train).Inputs.shape, Is.EqualTo(new long[] { 100, 32 }));
    }

    [Test]
    public void Suite_TaskDataDoNotDependOnTheNumberOfTasks()
    {
        using var two = SyntheticTaskSuite.Create(new SyntheticTaskSuiteOptions { Tasks = 2, Seed = 3, TrainPerClass = 10 });
        using var four = SyntheticTaskSuite.Create(new SyntheticTaskSuiteOptions { Tasks = 4, Seed = 3, TrainPerClass = 10 });
        Assert.That(Same(two.Get(1, DemoSplit.Test).Inputs, four.Get(1, DemoSplit.Test).Inputs), Is.True);
    }

    [Test]
    public void Encoder_HasModelLikeNames_AndRoundTripsThroughSafetensors()
    {
        using var dir = new TempDirectory();
        using var a = new TinyEncoder(32, 64, seed: 1);
        using var b = new TinyEncoder(32, 64, seed: 1);
        using var c = new TinyEncoder(32, 64, seed: 2);
        Assert.That(a.ParameterNames, Is.EqualTo(new[]
        {
            "encoder.layers.0.fc1.bias", "encoder.layers.0.fc1.weight", "encoder.layers.0.fc2.bias",
            "encoder.layers.0.fc2.weight", "encoder.layers.0.layer_norm.bias", "encoder.layers.0.layer_norm.weight",
        }));
        var pa = a.GetParameters();
        var pb = b.GetParameters();
        var pc = c.GetParameters();
        Assert.That(Same(pa["encoder.layers.0.fc1.weight"], pb["encoder.layers.0.fc1.weight"]), Is.True);
        Assert.That(Same(pa["encoder.layers.0.fc1.weight"], pc["encoder.layers.0.fc1.weight"]), Is.False);

        a.Save(dir.File("a.safetensors"));
        using (var file = Checkpoint.Open(dir.File("a.safetensors"))) c.Load(file);
        var reloaded = c.GetParameters();
        foreach (var name in a.ParameterNames)
            Assert.That(Same(reloaded[name], pa[name]), Is.True, name);
        foreach (var t in pa.Values.Concat(pb.Values).Concat(pc.Values).Concat(reloaded.Values)) t.Dispose();
    }

    [Test]
    public void FineTuningBeatsZeroShotOnEveryTask()
    {
        for (int t = 0; t < _result.TaskNames.Count; t++)
            Assert.That(_result.FineTuned.Accuracies[t], Is.GreaterThan(_result.ZeroShot.Accuracies[t] + 0.10),
                $"{_result.TaskNames[t]}: fine-tuned {_result.FineTuned.Accuracies[t]:P1} vs zero-shot {_result.ZeroShot.Accuracies[t]:P1}");
        Assert.That(_result.ZeroShot.MeanAccuracy, Is.GreaterThan(1.0 / _result.Options.Classes), "zero-shot should be better than chance");
        Assert.That(_result.FineTuned.NormalizedMean, Is.EqualTo(1.0).Within(1e-12));
    }

    [Test]
    public void EveryDataFreeMethodRuns_AndTaskArithmeticBeatsZeroShot()
    {
        Assert.That(_result.Merges.Select(r => r.Name), Is.EqualTo(MergeMethods.Names.Where(n => n != MergeMethods.NegateName)));
        var ta = _result[MergeMethods.TaskArithmeticName];
        Assert.That(ta.MeanAccuracy, Is.GreaterThan(_result.ZeroShot.MeanAccuracy + 0.05));
        Assert.That(ta.MeanAccuracy, Is.LessThanOrEqualTo(_result.FineTuned.MeanAccuracy + 0.02));
        foreach (var row in _result.Merges)
        {
            Assert.That(row.MergeSeconds, Is.Not.Null.And.GreaterThanOrEqualTo(0), row.Name);
            Assert.That(row.Accuracies, Has.Count.EqualTo(3).And.All.InRange(0.0, 1.0), row.Name);
            Assert.That(row.MeanAccuracy, Is.EqualTo(row.Accuracies.Average()).Within(1e-12), row.Name);
        }
    }

    [Test]
    public void LambdaIsChosenFromTheGrid_AndUsedByTaskArithmetic()
    {
        var search = _result.LambdaSearch;
        Assert.That(TaskArithmetic.DefaultGrid, Does.Contain(search.BestLambda));
        Assert.That(search.Evaluations.Select(e => e.Lambda), Is.EqualTo(TaskArithmetic.DefaultGrid));
        Assert.That(search.BestMeanNormalizedAccuracy, Is.EqualTo(search.Evaluations.Max(e => e.MeanNormalizedAccuracy)));
        Assert.That(_result[MergeMethods.TaskArithmeticName].Lambda, Is.EqualTo(search.BestLambda));
        Assert.That(_result[MergeMethods.DareTaskArithmeticName].Lambda, Is.EqualTo(search.BestLambda));
        // λ = 0 is the base model: its validation score cannot beat the chosen one.
        Assert.That(search.BestLambda, Is.GreaterThan(0));
    }

    [Test]
    public void NegationLowersTaskZero_AndKeepsTheOthersNearZeroShot()
    {
        var neg = _result.Negation;
        Assert.That(neg.TargetTask, Is.EqualTo("task0"));
        Assert.That(TaskArithmetic.DefaultGrid, Does.Contain(neg.Lambda));
        Assert.That(neg.Lambda, Is.GreaterThan(0));
        Assert.That(neg.ZeroShotAccuracies, Is.EqualTo(_result.ZeroShot.Accuracies));
        Assert.That(neg.Accuracies[0], Is.LessThan(neg.ZeroShotAccuracies[0] - 0.2));
        Assert.That(neg.ControlMean, Is.GreaterThan(0.85 * neg.ZeroShotControlMean));
    }

    [Test]
    public void CheckpointsGoThroughRealFiles()
    {
        string[] expected = ["base.safetensors", "ft_task0.safetensors", "ft_task1.safetensors", "ft_task2.safetensors", "negated_task0.safetensors"];
        foreach (var f in expected.Concat(_result.Merges.Select(m => $"merged_{m.Name}.safetensors")))
            Assert.That(File.Exists(_work.File(f)), Is.True, f);
        using var merged = Checkpoint.Open(_work.File("merged_ties.safetensors"));
        Assert.That(merged.Metadata["merge_method"], Is.EqualTo("ties"));
        Assert.That(merged.Metadata["merged_tasks"], Is.EqualTo("task0,task1,task2"));
        Assert.That(merged.Tensors.Select(t => t.Name), Does.Contain("encoder.layers.0.fc1.weight"));
    }

    [Test]
    public void ResultsJson_ParsesAndMatchesTheApi()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(_result.ResultsJsonPath));
        var methods = doc.RootElement.GetProperty("methods");
        Assert.That(methods.EnumerateObject().Select(p => p.Name), Is.EqualTo(_result.Rows.Select(r => r.Name)));
        foreach (var row in _result.Rows)
        {
            var m = methods.GetProperty(row.Name);
            var tasks = m.GetProperty("tasks");
            for (int t = 0; t < _result.TaskNames.Count; t++)
                Assert.That(tasks.GetProperty(_result.TaskNames[t]).GetDouble(), Is.EqualTo(row.Accuracies[t]), $"{row.Name}/{_result.TaskNames[t]}");
            Assert.That(m.GetProperty("mean_accuracy").GetDouble(), Is.EqualTo(row.MeanAccuracy), row.Name);
            Assert.That(m.GetProperty("normalized_mean").GetDouble(), Is.EqualTo(row.NormalizedMean), row.Name);
        }
        Assert.That(methods.GetProperty("task-arithmetic").GetProperty("lambda").GetDouble(), Is.EqualTo(_result.LambdaSearch.BestLambda));
        var neg = doc.RootElement.GetProperty("negation");
        Assert.That(neg.GetProperty("lambda").GetDouble(), Is.EqualTo(_result.Negation.Lambda));
        Assert.That(neg.GetProperty("tasks").GetProperty("task0").GetDouble(), Is.EqualTo(_result.Negation.Accuracies[0]));

        var markdown = File.ReadAllText(_result.ResultsMarkdownPath);
        foreach (var row in _result.Rows) Assert.That(markdown, Does.Contain($"| {(row.Name == "fine-tuned" ? "fine-tuned (individual)" : row.Name)}"));
    }

    [Test]
    public void SameSeed_GivesIdenticalResults()
    {
        using var other = new TempDirectory();
        var again = MergeDemo.Run(Small(other.Path));
        Assert.That(again.Rows.Select(r => r.Name), Is.EqualTo(_result.Rows.Select(r => r.Name)));
        foreach (var (a, b) in _result.Rows.Zip(again.Rows))
        {
            Assert.That(b.Accuracies, Is.EqualTo(a.Accuracies), a.Name);
            Assert.That(b.Lambda, Is.EqualTo(a.Lambda), a.Name);
        }
        Assert.That(again.LambdaSearch.Evaluations.Select(e => e.Accuracies), Is.EqualTo(_result.LambdaSearch.Evaluations.Select(e => e.Accuracies)));
        Assert.That(again.Negation.Accuracies, Is.EqualTo(_result.Negation.Accuracies));
        // The checkpoints themselves are bit-identical.
        foreach (var f in new[] { "base.safetensors", "ft_task2.safetensors", "merged_dare-ties.safetensors", "merged_tsv.safetensors" })
            Assert.That(File.ReadAllBytes(other.File(f)), Is.EqualTo(File.ReadAllBytes(_work.File(f))), f);
    }

    [Test]
    public void DefaultWorkFolder_IsTemporary_AndKeepsOnlyTheResults()
    {
        var result = MergeDemo.Run(new MergeDemoOptions { Tasks = 2, FineTuneSteps = 20, PretrainSteps = 5, TrainPerClass = 20, ValidationPerClass = 10, TestPerClass = 10 });
        try
        {
            Assert.That(result.CheckpointsKept, Is.False);
            Assert.That(Directory.GetFiles(result.WorkDirectory).Select(Path.GetFileName), Is.EquivalentTo(new[] { "results.json", "results.md" }));
        }
        finally
        {
            Directory.Delete(result.WorkDirectory, recursive: true);
        }
    }

    [Test]
    public void Cancellation_StopsTheRun()
    {
        using var dir = new TempDirectory();
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.Throws<OperationCanceledException>(() => MergeDemo.Run(Small(dir.Path), cancellationToken: cts.Token));
    }

    [Test]
    public void Command_RunsTheDemo_AndRejectsOutOfRangeOptions()
    {
        using var dir = new TempDirectory();
        var command = DemoCommand.Create();
        var output = Console.Out;
        var captured = new StringWriter();
        Console.SetOut(captured);
        int exit;
        try
        {
            exit = command.Parse(["--tasks", "2", "--steps", "30", "--seed", "4", "--work", dir.Path]).Invoke();
        }
        finally
        {
            Console.SetOut(output);
        }
        Assert.That(exit, Is.EqualTo(0), captured.ToString());
        Assert.That(File.Exists(dir.File("results.json")), Is.True);
        Assert.That(captured.ToString(), Does.Contain("task-arithmetic").And.Contain("zero-shot").And.Contain("negate task0"));
        using (var doc = JsonDocument.Parse(File.ReadAllText(dir.File("results.json"))))
            Assert.That(doc.RootElement.GetProperty("config").GetProperty("finetune_steps").GetInt32(), Is.EqualTo(30));

        Assert.That(DemoCommand.Create().Parse(["--tasks", "9"]).Errors, Is.Not.Empty);
        Assert.That(DemoCommand.Create().Parse(["--tasks", "1"]).Errors, Is.Not.Empty);
        Assert.That(DemoCommand.Create().Parse(["--steps", "0"]).Errors, Is.Not.Empty);
    }
}
