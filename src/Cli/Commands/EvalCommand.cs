using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Runtime;
using Microsoft.ML.TaskVectors.Trainers.Composition;
using Microsoft.ML.TaskVectors.Trainers.Tasks;

namespace Microsoft.ML.TaskVectors.Cli.Commands;

// Inside Microsoft.ML.*, the namespace Microsoft.ML.Command would hide System.CommandLine.Command.
using Command = System.CommandLine.Command;

/// <summary><c>taskvectors eval</c>: per-task test accuracy (and gated ratio) of a trained composition.</summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var stateOption = new Option<string>("--state") { Description = "A folder written by taskvectors compose.", Required = true };
        var tasks = new Option<string[]>("--task") { Description = "NAME=SOURCE for each task of the state: " + TaskSource.AcceptedForms, Required = true, AllowMultipleArgumentsPerToken = true };
        var json = new Option<string?>("--json") { Description = "Also write the results as JSON." };
        var coefficients = new Option<string?>("--coefficients") { Description = "Also write each test sample's coefficients (and gates) per task to this .safetensors file." };
        var device = new Option<string>("--device") { Description = "auto, cpu, cuda or cuda:N.", DefaultValueFactory = _ => ComputeDevice.Auto };
        var command = new Command("eval", "Test accuracy per task (and gated ratio) of a trained composition.") { stateOption, tasks, json, coefficients, device };
        command.SetAction((result, cancellationToken) =>
        {
            using var state = CompositionState.Load(result.GetValue(stateOption)!);
            state.VerifyReferences();
            var byName = result.GetValue(tasks)!.Select(FinetuneCommand.ParseTask).ToDictionary(s => s.Name);
            var missing = state.TaskNames.Where(n => !byName.ContainsKey(n)).ToArray();
            if (missing.Length > 0) throw new ArgumentException($"--task: the state was trained on {string.Join(", ", state.TaskNames)}; give data for {string.Join(", ", missing)} too.");
            var sources = state.TaskNames.Select(n => byName[n]).ToArray();
            using var session = CompositionSession.Open(state.BaseModel.Path, state.TaskVectors.Select(r => r.Path).ToArray(), sources,
                ComputeDevice.Resolve(result.GetValue(device)), state.Heads.Select(h => h?.Path).ToArray(), cancellationToken);
            using var trained = TrainedComposition.FromState(state, session.Engine);
            var testTasks = session.Tasks.Select((t, i) => t with
            {
                Selection = session.Data[i].Test ?? throw new ArgumentException($"--task {t.Name}: the data has no test split to evaluate on."),
            }).ToArray();
            var scores = CliProgress.Run(_ => CompositionEvaluator.Evaluate(session.Engine, testTasks, t => t.Selection, trained, cancellationToken: cancellationToken));
            double mean = scores.Average(s => s.Accuracy);
            double? gated = scores.All(s => s.GatedRatio is not null) ? scores.Average(s => s.GatedRatio!.Value) : null;
            foreach (var s in scores)
                Console.WriteLine($"{s.Task,-24} accuracy {s.Accuracy * 100,6:F2} %{(s.GatedRatio is { } g ? $"   gated ratio {g:F3}" : "")}");
            Console.WriteLine($"{"mean",-24} accuracy {mean * 100,6:F2} %{(gated is { } m ? $"   gated ratio {m:F3}" : "")}");
            if (result.GetValue(coefficients) is { } dumpPath)
            {
                var tensors = new Dictionary<string, TorchSharp.torch.Tensor>();
                foreach (var task in testTasks)
                {
                    var (z, gates, uncertainty) = CompositionAnalysis.Collect(session.Engine, trained, task.Selection!, cancellationToken: cancellationToken);
                    tensors[$"{task.Name}.coefficients"] = z;
                    if (gates is not null) tensors[$"{task.Name}.gates"] = gates;
                    if (uncertainty is not null)
                    {
                        tensors[$"{task.Name}.uncertainty"] = uncertainty;
                        Console.WriteLine($"{task.Name,-24} uncertainty mean {uncertainty.mean().item<float>():G4}, max {uncertainty.max().item<float>():G4}");
                    }
                }
                SafetensorsWriter.Save(dumpPath, tensors, new Dictionary<string, string>
                {
                    ["method"] = trained.Method,
                    ["tasks"] = string.Join(",", state.TaskNames),
                    ["blocks"] = string.Join(",", session.Engine.Blocks.Blocks.Select(b => b.Name)),
                });
                foreach (var t in tensors.Values) t.Dispose();
            }
            if (result.GetValue(json) is { } path)
            {
                var document = new JsonObject
                {
                    ["mean_accuracy"] = mean,
                    ["gated_ratio"] = gated,
                    ["tasks"] = new JsonObject(scores.Select(s => KeyValuePair.Create(s.Task, (JsonNode?)new JsonObject
                    {
                        ["accuracy"] = s.Accuracy,
                        ["gated_ratio"] = s.GatedRatio,
                    }))),
                };
                AtomicFile.WriteAllText(path, document.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            }
            return Task.FromResult(0);
        });
        return command;
    }
}
