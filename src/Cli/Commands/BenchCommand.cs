using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Microsoft.ML.TaskVectors.Cli.Bench;
using Microsoft.ML.TaskVectors.Composition;
using Microsoft.ML.TaskVectors.Merging;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Runtime;

namespace Microsoft.ML.TaskVectors.Cli.Commands;

// Inside Microsoft.ML.*, the namespace Microsoft.ML.Command would hide System.CommandLine.Command.
using Command = System.CommandLine.Command;

/// <summary><c>taskvectors bench</c>: performance measurements that are not tests.</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var command = new Command("bench", "Benchmarks (results go in docs/benchmarks.md).");
        command.Subcommands.Add(CreateMerge());
        command.Subcommands.Add(CreateComposition());
        command.Subcommands.Add(CreateTrainers());
        return command;
    }

    private static Command CreateTrainers()
    {
        var arch = new Option<string>("--arch") { Description = "tiny, vit-b-32, vit-b-16 or vit-l-14.", DefaultValueFactory = _ => "vit-b-32" };
        var tasks = new Option<int>("--tasks") { Description = "Number of task vectors N.", DefaultValueFactory = _ => 8 };
        var batch = new Option<int>("--batch") { Description = "Images per step.", DefaultValueFactory = _ => 128 };
        var steps = new Option<int>("--steps") { Description = "Timed steps per trainer (after one untimed pass over the images).", DefaultValueFactory = _ => 6 };
        var device = new Option<string>("--device") { Description = "cpu, cuda or auto.", DefaultValueFactory = _ => "cpu" };
        var command = new Command("trainers", "Training throughput of each composition trainer against a fine-tuning step, random weights and images.")
        {
            arch, tasks, batch, steps, device,
        };
        command.SetAction((result, cancellationToken) =>
        {
            var name = result.GetValue(arch)!;
            // "tiny" is a 2-layer, 16-wide tower on 32-pixel images: for checking the command, not for numbers.
            var config = name.Equals("tiny", StringComparison.OrdinalIgnoreCase)
                ? new ClipConfig(new ClipVisionConfig(ImageSize: 32, PatchSize: 16, Width: 16, Layers: 2, Heads: 4, MlpWidth: 32), null, ProjectionDim: 12)
                : ClipConfig.Architectures.TryGetValue(name, out var known) ? known
                : throw new ArgumentException($"--arch: unknown architecture '{name}'; valid: tiny, {string.Join(", ", ClipConfig.Architectures.Keys)}.");
            var n = result.GetValue(tasks);
            if (n < 1) throw new ArgumentException($"--tasks must be at least 1 (got {n}).");
            var b = result.GetValue(batch);
            if (b < Math.Max(2, n)) throw new ArgumentException($"--batch must be at least --tasks and at least 2 (got {b} for {n} task(s)).");
            var s = result.GetValue(steps);
            if (s < 1) throw new ArgumentException($"--steps must be at least 1 (got {s}).");
            var resolved = ComputeDevice.Resolve(result.GetValue(device)!);
            var json = TrainerBenchmark.Run(name, config, n, b, s, resolved, Console.Out, cancellationToken);
            Console.WriteLine(json.ToJsonString());
            return Task.FromResult(0);
        });
        return command;
    }

    private static Command CreateComposition()
    {
        var arch = new Option<string>("--arch") { Description = "vit-b-32, vit-b-16 or vit-l-14.", DefaultValueFactory = _ => "vit-b-32" };
        var tasks = new Option<int>("--tasks") { Description = "Number of task vectors N.", DefaultValueFactory = _ => 8 };
        var batch = new Option<int[]>("--batch") { Description = "Batch sizes.", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => [16] };
        var device = new Option<string>("--device") { Description = "cpu, cuda or auto.", DefaultValueFactory = _ => "cpu" };
        var repeats = new Option<int>("--repeats") { Description = "Timed repeats per case (the best is kept).", DefaultValueFactory = _ => 3 };
        var tile = new Option<long>("--tile-bytes") { Description = "Per-sample weight tile size in bytes.", DefaultValueFactory = _ => new CompositionEngineOptions().TileBytes };
        var noBranch = new Option<bool>("--no-branch") { Description = "Skip the branch strategy (N + 1 products per layer: slow at ViT sizes)." };
        var command = new Command("composition", "Plain vs composed forward (task-level, per-sample by strategy) and a training step, random weights.")
        {
            arch, tasks, batch, device, repeats, tile, noBranch,
        };
        command.SetAction((result, cancellationToken) =>
        {
            var name = result.GetValue(arch)!;
            if (!ClipConfig.Architectures.TryGetValue(name, out var config))
                throw new ArgumentException($"--arch: unknown architecture '{name}'; valid: {string.Join(", ", ClipConfig.Architectures.Keys)}.");
            var n = result.GetValue(tasks);
            if (n < 1) throw new ArgumentException($"--tasks must be at least 1 (got {n}).");
            var batches = result.GetValue(batch)!;
            if (batches.Length == 0 || batches.Any(b => b < 1)) throw new ArgumentException("--batch: give one or more positive batch sizes.");
            if (result.GetValue(repeats) < 1) throw new ArgumentException("--repeats must be at least 1.");
            var requested = result.GetValue(device)!;
            var resolved = ComputeDevice.Resolve(requested);
            var json = CompositionBenchmark.Run(name, config, n, batches, resolved, result.GetValue(repeats), result.GetValue(tile), !result.GetValue(noBranch), Console.Out, cancellationToken);
            Console.WriteLine(json.ToJsonString());
            return Task.FromResult(0);
        });
        return command;
    }

    private static Command CreateMerge()
    {
        var tasks = new Option<int>("--tasks") { Description = "Number of task vectors.", DefaultValueFactory = _ => 8 };
        var width = new Option<int>("--width") { Description = "Transformer width (768 for ViT-B/32).", DefaultValueFactory = _ => 768 };
        var layers = new Option<int>("--layers") { Description = "Transformer layers (12 for ViT-B/32).", DefaultValueFactory = _ => 12 };
        var methods = new Option<string[]>("--methods")
        {
            Description = "Merge methods to time.",
            AllowMultipleArgumentsPerToken = true,
            DefaultValueFactory = _ => [MergeMethods.TaskArithmeticName, MergeMethods.TiesName, MergeMethods.DareTiesName, MergeMethods.TsvName],
        };
        var work = new Option<string>("--work")
        {
            Description = "Folder for the random checkpoints (kept and reused between runs).",
            DefaultValueFactory = _ => Path.Combine(Path.GetTempPath(), "taskvectors-bench-merge"),
        };
        var ranking = new Option<string>("--ranking") { Description = "TIES and DARE → TIES: magnitude ranking over the whole task vector or per tensor.", DefaultValueFactory = _ => "global" };
        ranking.AcceptOnlyFromAmong("global", "per-tensor");
        var measure = new Option<string?>("--measure") { Hidden = true, Description = "Internal: one measurement in this process." };
        var repeats = new Option<int>("--repeats") { Description = "Rounds, each running every measurement once (the fastest of each is kept; ratios to the read are also given per round).", DefaultValueFactory = _ => 3 };
        var device = new Option<string>("--device") { Description = "Where TSV-M and WUDI compute: cpu, cuda or cuda:N (never replaced by another).", DefaultValueFactory = _ => "cpu" };
        var command = new Command("merge", "Merge N random task vectors of a ViT-sized model; compare with reading the N+1 files.")
        {
            tasks, width, layers, methods, work, ranking, repeats, device, measure,
        };
        command.SetAction((result, cancellationToken) =>
        {
            var n = result.GetValue(tasks);
            if (n < 1) throw new ArgumentException($"--tasks must be at least 1 (got {n}).");
            if (result.GetValue(repeats) < 1) throw new ArgumentException($"--repeats must be at least 1 (got {result.GetValue(repeats)}).");
            foreach (var m in result.GetValue(methods)!)
                if (!MergeMethods.Names.Contains(m)) throw new ArgumentException($"--methods: unknown method '{m}'; valid: {string.Join(", ", MergeMethods.Names)}.");
            var where = result.GetValue(device)!;
            ComputeDevice.Resolve(where, requireRequested: true); // refused before any work
            if (result.GetValue(measure) is { } what)
            {
                Console.WriteLine(JsonSerializer.Serialize(MergeBenchmark.Measure(result.GetValue(work)!, n, what, result.GetValue(ranking)!, where, cancellationToken)));
                return Task.FromResult(0);
            }
            var layout = VitLayout.Vision(result.GetValue(width), result.GetValue(layers));
            var r = MergeBenchmark.Run(result.GetValue(work)!, n, layout, result.GetValue(methods)!.Distinct().ToArray(), result.GetValue(ranking)!,
                result.GetValue(repeats), where, RunChild, Console.Out, cancellationToken);
            Console.WriteLine(MergeBenchmark.ToJson(r));
            return Task.FromResult(0);
        });
        return command;
    }

    /// <summary>Runs this tool again with <c>bench merge ARGS</c> and reads the measurement it prints last.</summary>
    private static MergeBenchmark.Measurement RunChild(string what, string[] args)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true };
        // Under `dotnet taskvectors.dll` the process is dotnet and the assembly comes first.
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet")
            start.ArgumentList.Add(typeof(BenchCommand).Assembly.Location);
        foreach (var a in new[] { "bench", "merge" }.Concat(args)) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var lines = process.StandardOutput.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        process.WaitForExit();
        if (process.ExitCode != 0 || lines.Length == 0)
            throw new InvalidOperationException($"bench merge: measuring '{what}' failed (exit {process.ExitCode}): {stderr.Result.Trim()}");
        return JsonSerializer.Deserialize<MergeBenchmark.Measurement>(lines[^1])!;
    }
}
