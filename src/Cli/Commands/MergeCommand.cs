using System.CommandLine;
using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Merging;
using Microsoft.ML.TaskVectors.Runtime;
using Microsoft.ML.TaskVectors.TaskVectors;

namespace Microsoft.ML.TaskVectors.Cli.Commands;

// Inside Microsoft.ML.*, the namespace Microsoft.ML.Command would hide System.CommandLine.Command.
using Command = System.CommandLine.Command;

/// <summary><c>taskvectors merge</c>: a data-free merge of fine-tuned checkpoints into one complete checkpoint.</summary>
internal static class MergeCommand
{
    public static Command Create()
    {
        var method = new Option<string>("--method") { Description = "Merge method.", Required = true };
        method.AcceptOnlyFromAmong(MergeMethods.Names.ToArray());
        var @base = new Option<string>("--base") { Description = "Pre-trained checkpoint: a .safetensors file or a Hugging Face model folder.", Required = true };
        var finetuned = new Option<string[]>("--finetuned")
        {
            Description = "Fine-tuned checkpoints (files or folders), one per task.",
            Required = true,
            AllowMultipleArgumentsPerToken = true,
        };
        var lambda = new Option<double?>("--lambda") { Description = "Scaling λ (task arithmetic 0.3, TIES/negate 1.0 by default)." };
        var k = new Option<double>("--k") { Description = "TIES: fraction of entries kept per task vector.", DefaultValueFactory = _ => 0.2 };
        var ranking = new Option<string>("--ranking") { Description = "TIES: rank magnitudes over the whole task vector or per tensor.", DefaultValueFactory = _ => "global" };
        ranking.AcceptOnlyFromAmong("global", "per-tensor");
        var aggregation = new Option<string>("--aggregation") { Description = "TIES: average (dis-mean) or add (dis-sum) the agreeing values.", DefaultValueFactory = _ => "mean" };
        aggregation.AcceptOnlyFromAmong("mean", "sum");
        var p = new Option<double>("--p") { Description = "DARE: drop probability.", DefaultValueFactory = _ => 0.5 };
        var seed = new Option<long>("--seed") { Description = "DARE: random seed.", DefaultValueFactory = _ => 0 };
        var alpha = new Option<double>("--alpha") { Description = "TSV-M: scaling α.", DefaultValueFactory = _ => 1.0 };
        var wudiLr = new Option<double>("--wudi-lr") { Description = "WUDI: Adam learning rate.", DefaultValueFactory = _ => 1e-5 };
        var wudiSteps = new Option<int>("--wudi-steps") { Description = "WUDI: Adam steps per 2-D weight.", DefaultValueFactory = _ => 300 };
        var device = new Option<string>("--device")
        {
            Description = "TSV-M and WUDI: auto, cpu, cuda or cuda:N (an explicit CUDA device is never replaced by the CPU).",
            DefaultValueFactory = _ => ComputeDevice.Auto,
        };
        var output = new Option<string>("--out") { Description = "Where to write the merged checkpoint (.safetensors).", Required = true };
        var selection = new TensorSelectionOptions();

        var command = new Command("merge", "Merge task vectors into the base model and write a complete checkpoint.")
        {
            method, @base, finetuned, lambda, k, ranking, aggregation, p, seed, alpha, wudiLr, wudiSteps, device, output,
        };
        selection.AddTo(command);
        command.SetAction((result, cancellationToken) =>
        {
            var options = new MergeMethodOptions
            {
                Lambda = result.GetValue(lambda),
                K = result.GetValue(k),
                Ranking = result.GetValue(ranking) == "per-tensor" ? TiesRanking.PerTensor : TiesRanking.Global,
                Aggregation = result.GetValue(aggregation) == "sum" ? TiesAggregation.DisjointSum : TiesAggregation.DisjointMean,
                P = result.GetValue(p),
                Seed = result.GetValue(seed),
                Alpha = result.GetValue(alpha),
                WudiLearningRate = result.GetValue(wudiLr),
                WudiSteps = result.GetValue(wudiSteps),
                Device = result.GetValue(device)!,
                RequireDevice = !string.Equals(result.GetValue(device)!.Trim(), ComputeDevice.Auto, StringComparison.OrdinalIgnoreCase),
            };
            var mergeMethod = MergeMethods.Create(result.GetValue(method)!, options);
            Run(result.GetValue(@base)!, result.GetValue(finetuned)!, mergeMethod, selection.Read(result), result.GetValue(output)!, cancellationToken);
            return Task.FromResult(0);
        });
        return command;
    }

    public static void Run(string basePath, IReadOnlyList<string> finetunedPaths, MergeMethod method, TensorFilter filter, string outputPath,
        CancellationToken cancellationToken)
    {
        using var @base = Checkpoint.Open(basePath);
        var finetuned = new List<Checkpoint>();
        try
        {
            foreach (var path in finetunedPaths) finetuned.Add(Checkpoint.Open(path));
            var names = TensorSelectionOptions.TaskNames(finetunedPaths);
            using var pool = new TaskVectorPool(finetuned.Select((f, i) => TaskVector.FromCheckpoints(@base, f, filter, names[i])).ToArray());
            var started = DateTime.UtcNow;
            CliProgress.Run(progress =>
            {
                ModelMerger.MergeToFile(@base, pool, method, outputPath, new SynchronousProgress<MergeProgress>(p => progress.Report((p.Phase == "prepare" ? "Ranking" : "Merging", p.Fraction))), cancellationToken);
                return 0;
            });
            Console.WriteLine($"{method.Name}: merged {pool.Count} task vector(s) over {pool.TensorNames.Count} tensors " +
                              $"({pool.ParameterCount:N0} parameters) into {outputPath} in {(DateTime.UtcNow - started).TotalSeconds:F1} s.");
        }
        finally
        {
            foreach (var f in finetuned) f.Dispose();
        }
    }
}
