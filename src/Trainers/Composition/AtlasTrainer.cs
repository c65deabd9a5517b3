using Microsoft.ML.TaskVectors.Composition;
using Microsoft.ML.TaskVectors.Data;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using Microsoft.ML.TaskVectors.Trainers.Tasks;

namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>What a task-level composition trainer learned.</summary>
/// <param name="Coefficients">z [N, M] of the kept epoch (CPU, float32).</param>
/// <param name="BestEpoch">The kept epoch (1-based).</param>
/// <param name="EpochLosses">Mean training loss of each epoch.</param>
/// <param name="SelectionScores">Mean normalised selection accuracy of each epoch (empty without selection splits).</param>
public sealed record TaskLevelComposition(Tensor Coefficients, int BestEpoch, IReadOnlyList<double> EpochLosses, IReadOnlyList<double> SelectionScores);

/// <summary>
/// aTLAS (SPEC 2.2, Table 1 row 2): one learned coefficient per task and block, z[t, j], initialised to 0
/// (the pre-trained model), trained with AdamW on batches that mix the tasks evenly, each sample's loss
/// taken through its own task's frozen head. θ0 and τ stay frozen in the engine.
/// </summary>
public sealed class AtlasTrainer(CompositionTrainerOptions? options = null)
{
    /// <summary>The options.</summary>
    public CompositionTrainerOptions Options { get; } = options ?? new CompositionTrainerOptions();

    /// <summary>Learns z on the tasks' training splits.</summary>
    /// <exception cref="ArgumentException">The tasks do not match the engine's task vectors.</exception>
    /// <exception cref="InvalidOperationException">The loss became NaN or infinite; the message names the step.</exception>
    public TaskLevelComposition Fit(CompositionEngine engine, IReadOnlyList<CompositionTask> tasks,
        IProgress<CompositionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        random.manual_seed(Options.Seed);
        var z = nn.Parameter(zeros(engine.TaskCount, engine.BlockCount, device: engine.Device));
        var run = CompositionTraining.Run("aTLAS", engine, tasks, Options, [z],
            (pixels, batch, _, _) => BatchLoss(engine, tasks, t => t.Train, pixels, batch, _ => z, CrossEntropySum),
            _ => z.detach(), () => new Dictionary<string, Tensor> { ["coefficients"] = z }, training: null, cosineSchedule: false,
            progress, cancellationToken);
        return new TaskLevelComposition(z.detach().cpu().clone(), run.BestEpoch, run.EpochLosses, run.SelectionScores);
    }

    /// <summary>Summed cross-entropy of logits against labels.</summary>
    internal static Tensor CrossEntropySum(Tensor logits, Tensor labels) => F.cross_entropy(logits, labels, reduction: nn.Reduction.Sum);

    /// <summary>
    /// Mean per-sample loss of a mixed batch, each task's samples scored through that task's head by
    /// <paramref name="lossSum"/> (logits, labels) → summed loss.
    /// </summary>
    internal static Tensor BatchLoss(CompositionEngine engine, IReadOnlyList<CompositionTask> tasks, Func<CompositionTask, LabeledImageDataset> split,
        PixelSource pixels, IReadOnlyList<MultiTaskBatches.Item> batch, Func<Tensor, Tensor> coefficients, Func<Tensor, Tensor, Tensor> lossSum)
    {
        var x = pixels.Batch(batch.Select(item => (split(tasks[item.Task]), item.Index)).ToArray(), engine.Device);
        using var output = engine.Forward(x, coefficients(x));
        var total = zeros(1, device: engine.Device);
        // Batches hold each task's samples as one contiguous run.
        int start = 0;
        while (start < batch.Count)
        {
            int task = batch[start].Task, end = start;
            while (end < batch.Count && batch[end].Task == task) end++;
            var data = split(tasks[task]);
            var labels = tensor(batch.Skip(start).Take(end - start).Select(item => (long)data.GetLabel(item.Index)).ToArray(), device: engine.Device);
            total = total + lossSum(tasks[task].Head.Logits(output.ImageEmbeds.narrow(0, start, end - start)), labels);
            start = end;
        }
        return (total / batch.Count).squeeze();
    }

    internal static void CheckTasks(CompositionEngine engine, IReadOnlyList<CompositionTask> tasks)
    {
        if (tasks.Count != engine.TaskCount)
            throw new ArgumentException($"{tasks.Count} task(s) were given for {engine.TaskCount} task vector(s) ({string.Join(", ", engine.TaskNames)}); give one task per task vector, in the same order.", nameof(tasks));
        foreach (var task in tasks)
        {
            if (task.Train.Count == 0) throw new ArgumentException($"Task '{task.Name}' has no training images.", nameof(tasks));
            if (task.Head.EmbeddingDim != engine.ProjectionDim)
                throw new ArgumentException($"Task '{task.Name}': its head reads {task.Head.EmbeddingDim}-d embeddings, the model gives {engine.ProjectionDim}-d.", nameof(tasks));
            if (task.Head.ClassCount != task.Train.ClassNames.Count)
                throw new ArgumentException($"Task '{task.Name}': its head has {task.Head.ClassCount} classes, its data {task.Train.ClassNames.Count}.", nameof(tasks));
        }
    }
}
