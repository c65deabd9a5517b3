using System.CommandLine;
using Microsoft.ML.TaskVectors.Composition;
using Microsoft.ML.TaskVectors.Heads;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Runtime;
using Microsoft.ML.TaskVectors.TaskVectors;
using Microsoft.ML.TaskVectors.Text;
using Microsoft.ML.TaskVectors.Trainers.Composition;
using Microsoft.ML.TaskVectors.Trainers.FineTuning;
using Microsoft.ML.TaskVectors.Trainers.Tasks;

namespace Microsoft.ML.TaskVectors.Cli.Commands;

// Inside Microsoft.ML.*, the namespace Microsoft.ML.Command would hide System.CommandLine.Command.
using Command = System.CommandLine.Command;

/// <summary><c>taskvectors compose</c>: learns a composition of task vectors and writes its state.</summary>
internal static class ComposeCommand
{
    public static Command Create()
    {
        var method = new Option<string>("--method") { Description = "Composition method.", Required = true };
        method.AcceptOnlyFromAmong(CompositionTrainers.Names.ToArray());
        var model = new Option<string>("--model") { Description = "Pre-trained CLIP model folder (θ0).", Required = true };
        var taskVectors = new Option<string[]>("--task-vectors") { Description = "Task vectors (from taskvectors finetune), one per --task, same order.", Required = true, AllowMultipleArgumentsPerToken = true };
        var tasks = new Option<string[]>("--task") { Description = "NAME=SOURCE, one per task vector: " + TaskSource.AcceptedForms, Required = true, AllowMultipleArgumentsPerToken = true };
        var seed = new Option<long>("--seed") { Description = "Seed (bit-for-bit repeatable on the CPU).", DefaultValueFactory = _ => 0 };
        var epochs = new Option<int?>("--epochs") { Description = "Training epochs (default 20; AdaMerging: 25 steps per epoch, default 500 steps)." };
        var batch = new Option<int?>("--batch") { Description = "Images per step, split evenly between the tasks (default 128; AdaMerging 64)." };
        var device = new Option<string>("--device") { Description = "auto, cpu, cuda or cuda:N.", DefaultValueFactory = _ => ComputeDevice.Auto };
        var output = new Option<string>("--out") { Description = "Folder for the trained state.", Required = true };
        var checkpoint = new Option<string?>("--checkpoint") { Description = "Write a training checkpoint here after each epoch, and resume from one found here." };
        var command = new Command("compose", "Learn how to compose task vectors (aTLAS, the variational family, AdaMerging) on each task's validation split.")
        {
            method, model, taskVectors, tasks, seed, epochs, batch, device, output, checkpoint,
        };
        command.SetAction((result, cancellationToken) =>
        {
            var taus = result.GetValue(taskVectors)!;
            var sources = result.GetValue(tasks)!.Select(FinetuneCommand.ParseTask).ToArray();
            if (taus.Length != sources.Length)
                throw new ArgumentException($"--task-vectors: {taus.Length} task vector(s) for {sources.Length} --task(s); give one per task, in the same order.");
            if (result.GetValue(epochs) is < 1) throw new ArgumentException("--epochs must be at least 1.");
            if (result.GetValue(batch) is < 1) throw new ArgumentException("--batch must be at least 1.");
            var folder = result.GetValue(model)!;
            using var session = CompositionSession.Open(folder, taus, sources, ComputeDevice.Resolve(result.GetValue(device)), null, cancellationToken);
            var name = result.GetValue(method)!;
            using var trained = CliProgress.Run(progress => CompositionTrainers.Train(name, session.Engine, session.Tasks, result.GetValue(seed),
                result.GetValue(epochs), result.GetValue(batch),
                new SynchronousProgress<CompositionProgress>(p => progress.Report(($"{name} epoch {p.Epoch}", (double)p.Step / p.Steps))), cancellationToken,
                result.GetValue(checkpoint)));
            var stateFolder = result.GetValue(output)!;
            session.Save(stateFolder, trained);
            Console.Error.WriteLine($"wrote {stateFolder}");
            return Task.FromResult(0);
        });
        return command;
    }
}

/// <summary>θ0, the task vectors, the tasks' data and heads, and the engine over them, for compose and eval.</summary>
internal sealed class CompositionSession : IDisposable
{
    private readonly List<IDisposable> _owned = [];

    private CompositionSession(string modelFolder, IReadOnlyList<string> taskVectorPaths) =>
        (ModelFolder, TaskVectorPaths) = (modelFolder, taskVectorPaths);

    public string ModelFolder { get; }
    public IReadOnlyList<string> TaskVectorPaths { get; }
    public CompositionEngine Engine { get; private set; } = null!;
    public List<CompositionTask> Tasks { get; } = [];
    public List<string?> HeadPaths { get; } = [];
    public List<TaskData> Data { get; } = [];

    /// <summary>Loads everything; <paramref name="headPaths"/> (from a saved state) overrides where heads come from.</summary>
    public static CompositionSession Open(string modelFolder, IReadOnlyList<string> taskVectorPaths, IReadOnlyList<TaskSource> sources, TorchSharp.torch.Device device,
        IReadOnlyList<string?>? headPaths, CancellationToken cancellationToken)
    {
        var session = new CompositionSession(modelFolder, taskVectorPaths);
        try
        {
            var model = ClipModel.Load(modelFolder, device);
            session._owned.Add(model);
            var vectors = taskVectorPaths.Select((p, i) => TaskVector.Load(p, TensorFilter.ClipVisionTower, sources[i].Name)).ToArray();
            var pool = new TaskVectorPool(vectors);
            session._owned.Add(pool);
            session.Engine = CompositionEngine.Create(model, pool, options: new CompositionEngineOptions { Device = device }, cancellationToken: cancellationToken);
            session._owned.Add(session.Engine);
            ClipTokenizer? tokenizer = null;
            for (int t = 0; t < sources.Count; t++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var data = sources[t].Open();
                session.Data.Add(data);
                string? headPath = headPaths is null ? FineTuner.HeadPathFor(taskVectorPaths[t]) : headPaths[t];
                ClassificationHead head;
                if (headPath is not null && File.Exists(headPath)) head = ClassificationHead.Load(headPath, device);
                else
                {
                    headPath = null;
                    tokenizer ??= ClipTokenizer.FromFolder(modelFolder);
                    head = new FineTuner().BuildHead(model, data, tokenizer, cancellationToken: cancellationToken);
                }
                session._owned.Add(head);
                session.HeadPaths.Add(headPath);
                // aTLAS learns on the validation split (10 % of train) and picks its epoch there too.
                session.Tasks.Add(new CompositionTask(data.Name, data.Validation, head, Selection: data.Validation));
            }
            return session;
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>Writes the state; heads built on the fly are saved inside the state folder so eval reads the same ones.</summary>
    public void Save(string folder, TrainedComposition trained)
    {
        Directory.CreateDirectory(folder);
        var heads = new List<FileReference?>();
        for (int t = 0; t < Tasks.Count; t++)
        {
            var path = HeadPaths[t];
            if (path is null)
            {
                path = Path.Combine(folder, $"{Tasks[t].Name}.head.safetensors");
                Tasks[t].Head.Save(path);
            }
            heads.Add(FileReference.Of(path));
        }
        using var state = new CompositionState(trained.Method, trained.Options, Tasks.Select(t => t.Name).ToArray(), FileReference.Of(ModelFolder),
            TaskVectorPaths.Select(FileReference.Of).ToArray(), heads, trained.StateTensors());
        state.Save(folder);
    }

    public void Dispose()
    {
        for (int i = _owned.Count - 1; i >= 0; i--) _owned[i].Dispose();
    }
}
