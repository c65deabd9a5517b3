using System.CommandLine;
using System.Globalization;
using Microsoft.ML.TaskVectors.Runtime;
using Microsoft.ML.TaskVectors.Trainers.FineTuning;
using Microsoft.ML.TaskVectors.Trainers.Tasks;

namespace Microsoft.ML.TaskVectors.Cli.Commands;

// Inside Microsoft.ML.*, the namespace Microsoft.ML.Command would hide System.CommandLine.Command.
using Command = System.CommandLine.Command;

/// <summary><c>taskvectors finetune</c>: fine-tune a CLIP vision tower on one task and write its task vector and head.</summary>
internal static class FinetuneCommand
{
    public static Command Create()
    {
        var defaults = new FineTuningOptions();
        var model = new Option<string>("--model") { Description = "Pre-trained CLIP model folder (Hugging Face or open_clip).", Required = true };
        var task = new Option<string>("--task")
        {
            Description = "The task as NAME=SOURCE, SOURCE one of " + string.Join(", ", TaskSource.Formats.Select(f => f.Usage)) + ".",
            Required = true,
        };
        var epochs = new Option<int?>("--epochs") { Description = "Passes over the training split (default: the task_vectors recipe's for known task names, else 10)." };
        var steps = new Option<int?>("--steps") { Description = "Exactly this many optimizer steps, instead of --epochs." };
        var batch = new Option<int>("--batch") { Description = "Training images per step.", DefaultValueFactory = _ => defaults.BatchSize };
        var lr = new Option<double>("--lr") { Description = "Peak learning rate of AdamW.", DefaultValueFactory = _ => defaults.LearningRate };
        var warmup = new Option<int>("--warmup") { Description = "Linear warm-up steps before the cosine decay.", DefaultValueFactory = _ => defaults.WarmupSteps };
        var seed = new Option<int>("--seed") { Description = "Seed of the training order and augmentation.", DefaultValueFactory = _ => 0 };
        var head = new Option<string>("--head") { Description = "The frozen head: zeroshot (from the text tower) or linear (a probe on pre-trained features).", DefaultValueFactory = _ => "zeroshot" };
        var templates = new Option<string?>("--templates") { Description = "Zero-shot prompt templates: a known set (e.g. EuroSAT) or a file with one template per line (default: by task name)." };
        var device = new Option<string>("--device") { Description = "auto, cpu, cuda or cuda:N (an explicit CUDA device is never replaced by the CPU).", DefaultValueFactory = _ => ComputeDevice.Auto };
        var saveCheckpoint = new Option<bool>("--save-checkpoint") { Description = "Also write the fine-tuned model as a folder TAU.model/." };
        var output = new Option<string>("--out") { Description = "The task vector file to write (TAU.safetensors); the head goes to TAU.head.safetensors.", Required = true };
        var command = new Command("finetune", "Fine-tune the CLIP vision tower on one task (head frozen) and write the task vector τ = θ_ft − θ0 and the head.")
        {
            model, task, epochs, steps, batch, lr, warmup, seed, head, templates, device, saveCheckpoint, output,
        };
        command.SetAction((result, cancellationToken) =>
        {
            var taskSource = ParseTask(result.GetValue(task)!);
            var headKind = result.GetValue(head) switch
            {
                "zeroshot" => FineTuningHeadKind.ZeroShot,
                "linear" => FineTuningHeadKind.Linear,
                var other => throw new ArgumentException($"--head: expected zeroshot or linear, got '{other}'."),
            };
            int? epochCount = result.GetValue(epochs), stepCount = result.GetValue(steps);
            if (epochCount is not null && stepCount is not null) throw new ArgumentException("--epochs and --steps: give one or the other, not both.");
            if (epochCount < 1) throw new ArgumentException($"--epochs must be at least 1, got {epochCount}.");
            if (stepCount < 1) throw new ArgumentException($"--steps must be at least 1, got {stepCount}.");
            if (result.GetValue(batch) < 1) throw new ArgumentException($"--batch must be at least 1, got {result.GetValue(batch)}.");
            var rate = result.GetValue(lr);
            if (!double.IsFinite(rate) || rate <= 0) throw new ArgumentException($"--lr must be a finite positive number, got {rate.ToString(CultureInfo.InvariantCulture)}.");
            if (result.GetValue(warmup) < 0) throw new ArgumentException($"--warmup must be 0 or more, got {result.GetValue(warmup)}.");
            var templateOption = result.GetValue(templates);
            if (templateOption is not null && headKind != FineTuningHeadKind.ZeroShot) throw new ArgumentException("--templates: only a zero-shot head (--head zeroshot) uses prompt templates.");
            var deviceName = result.GetValue(device)!;

            var options = new FineTuningOptions
            {
                LearningRate = rate,
                WarmupSteps = result.GetValue(warmup),
                BatchSize = result.GetValue(batch),
                Epochs = epochCount ?? FineTuningOptions.RecipeEpochsFor(taskSource.Name) ?? defaults.Epochs,
                Steps = stepCount,
                Head = headKind,
                Templates = templateOption is null ? null : HeadSpecification.Templates(templateOption),
                Seed = result.GetValue(seed),
                Device = deviceName,
                RequireDevice = !string.Equals(deviceName.Trim(), ComputeDevice.Auto, StringComparison.OrdinalIgnoreCase),
                SaveCheckpoint = result.GetValue(saveCheckpoint),
            };
            Run(result.GetValue(model)!, taskSource, options, result.GetValue(output)!, cancellationToken);
            return Task.FromResult(0);
        });
        return command;
    }

    internal static TaskSource ParseTask(string text)
    {
        try
        {
            return TaskSource.Parse(text);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException("--task: " + e.Message, e);
        }
    }

    private static void Run(string modelFolder, TaskSource source, FineTuningOptions options, string outputPath, CancellationToken cancellationToken)
    {
        if (!Directory.Exists(modelFolder)) throw new DirectoryNotFoundException($"--model: no such folder '{modelFolder}'.");
        var data = source.Open();
        var tuner = new FineTuner(options);
        var result = CliProgress.Run(progress => tuner.FineTune(modelFolder, data, outputPath, head: null,
            new SynchronousProgress<FineTuningProgress>(p => progress.Report((PhaseName(p.Phase), p.Fraction))), cancellationToken));

        foreach (var e in result.Epochs)
            Console.WriteLine($"epoch {e.Epoch}/{result.Epochs.Count}: loss {e.TrainLoss:F4}, train accuracy {Percent(e.TrainAccuracy)}" +
                              (e.ValidationAccuracy is { } v ? $", val accuracy {Percent(v)}" : ""));
        Console.WriteLine($"{result.TaskName}: val accuracy {Change(result.PretrainedValidationAccuracy, result.ValidationAccuracy)}" +
                          (data.Test is null ? "" : $", test accuracy {Change(result.PretrainedTestAccuracy, result.TestAccuracy)}") +
                          $" (pre-trained → fine-tuned); {result.Steps} steps in {result.Elapsed.TotalSeconds:F1} s on {result.Device}.");
        Console.Error.WriteLine($"wrote {result.TaskVectorPath}");
        Console.Error.WriteLine($"wrote {result.HeadPath}");
        if (result.CheckpointPath is not null) Console.Error.WriteLine($"wrote {result.CheckpointPath}");
    }

    private static string PhaseName(FineTuningPhase phase) => phase switch
    {
        FineTuningPhase.Head => "head",
        FineTuningPhase.PretrainedEvaluation => "pre-trained accuracy",
        FineTuningPhase.Training => "training",
        FineTuningPhase.Evaluation => "accuracy",
        _ => "saving",
    };

    private static string Percent(double? value) => value is { } v ? (100 * v).ToString("F1", CultureInfo.InvariantCulture) + "%" : "n/a";

    private static string Change(double? before, double? after) => $"{Percent(before)} → {Percent(after)}";
}
