using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.TaskVectors.Composition;
using Microsoft.ML.TaskVectors.Images;
using Microsoft.ML.TaskVectors.TaskVectors;
using Microsoft.ML.TaskVectors.Trainers.Tasks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>What one run of <see cref="CompositionTraining.Run"/> produced.</summary>
/// <param name="BestEpoch">The kept epoch (1-based): best mean normalised selection accuracy, or the last without selection splits.</param>
/// <param name="EpochLosses">Mean training loss per epoch.</param>
/// <param name="SelectionScores">Mean normalised selection accuracy per epoch (empty without selection splits).</param>
internal sealed record TrainingRun(int BestEpoch, IReadOnlyList<double> EpochLosses, IReadOnlyList<double> SelectionScores);

/// <summary>
/// A step's loss and, for gated methods, the step's gated ratio (fraction of Ω ≥ 0.5). A plain loss tensor converts
/// to it, so ungated methods return their loss as before.
/// </summary>
/// <param name="Loss">The batch's scalar loss.</param>
/// <param name="GatedRatio">The step's gated ratio, or null for ungated methods.</param>
internal readonly record struct StepLoss(Tensor Loss, double? GatedRatio = null)
{
    public static implicit operator StepLoss(Tensor loss) => new(loss);
}

/// <summary>
/// The loop every learned composition shares: epochs of evenly mixed batches, AdamW with gradient
/// clipping (and optionally a cosine schedule), a NaN/Inf stop, progress, cancellation, scoring on the
/// selection splits after each epoch, restoring the best epoch's state at the end and, with
/// <see cref="CompositionTrainerOptions.CheckpointDirectory"/>, a checkpoint after each epoch to resume from.
/// </summary>
internal static class CompositionTraining
{
    /// <param name="method">The method's name, for messages and checkpoints.</param>
    /// <param name="engine">The composition engine.</param>
    /// <param name="tasks">The tasks.</param>
    /// <param name="options">Epochs, batch, optimiser settings, seed, checkpoint directory.</param>
    /// <param name="parameters">What the optimiser trains.</param>
    /// <param name="batchLoss">(pixels, batch, step, total steps) → the batch's loss (and gated ratio), inside the step's dispose scope.</param>
    /// <param name="selectionCoefficients">Test-time coefficients for pixels, to score the selection splits.</param>
    /// <param name="state">The tensors that define the learned model (parameters and buffers), live.</param>
    /// <param name="training">Switches modules between training (true) and evaluation (false) behaviour.</param>
    /// <param name="cosineSchedule">Whether the learning rate follows a cosine decay over all steps.</param>
    /// <param name="progress">Receives a report per step and one per epoch with the selection scores.</param>
    /// <param name="cancellationToken">Stops between steps.</param>
    /// <param name="reseed">
    /// Called before each step with a seed derived from (seed, method, step): the method reseeds its noise generators
    /// with it, so a resumed run draws the same noise as an uninterrupted one without carrying generator state.
    /// </param>
    /// <param name="settings">Settings outside <paramref name="options"/> that change training, for the checkpoint's fingerprint.</param>
    public static TrainingRun Run(string method, CompositionEngine engine, IReadOnlyList<CompositionTask> tasks, CompositionTrainerOptions options,
        IReadOnlyList<Parameter> parameters, Func<PixelSource, IReadOnlyList<MultiTaskBatches.Item>, long, long, StepLoss> batchLoss,
        Func<Tensor, Tensor> selectionCoefficients, Func<IReadOnlyDictionary<string, Tensor>> state, Action<bool>? training,
        bool cosineSchedule, IProgress<CompositionProgress>? progress, CancellationToken cancellationToken,
        Action<ulong>? reseed = null, JsonNode? settings = null)
    {
        AtlasTrainer.CheckTasks(engine, tasks);
        options.Validate(tasks.Count);
        var pixels = new PixelSource(ClipImagePreprocessor.For(engine.Config), options.CachePixels);
        using var optimizer = optim.AdamW(parameters, lr: options.LearningRate, weight_decay: options.WeightDecay);
        var sizes = tasks.Select(t => t.Train.Count).ToArray();
        int stepsPerEpoch = MultiTaskBatches.ForEpoch(sizes, options.BatchSize, options.Seed, 1).Count;
        long totalSteps = (long)stepsPerEpoch * options.Epochs, step = 0;
        var schedule = cosineSchedule ? optim.lr_scheduler.CosineAnnealingLR(optimizer, totalSteps) : null;
        var losses = new List<double>();
        var scores = new List<double>();
        Dictionary<string, Tensor>? best = null;
        double bestScore = double.NegativeInfinity;
        int bestEpoch = 0, firstEpoch = 1;
        bool select = tasks.All(t => t.Selection is not null);
        var directory = options.CheckpointDirectory;
        var fingerprint = directory is null ? "" : Fingerprint(engine, tasks, options, state(), cosineSchedule, settings);
        try
        {
            if (directory is not null && TrainingCheckpoint.TryLoad(directory, method, fingerprint, state(), optimizer) is { } resumed)
            {
                if (resumed.Epoch > options.Epochs)
                    throw new InvalidOperationException($"The checkpoint directory '{directory}' holds {resumed.Epoch} epochs of {method}, more than the {options.Epochs} requested; raise Epochs or choose another CheckpointDirectory.");
                (best, bestScore, bestEpoch, step, firstEpoch) = (resumed.Best, resumed.BestScore, resumed.BestEpoch, resumed.Step, resumed.Epoch + 1);
                losses.AddRange(resumed.Losses);
                scores.AddRange(resumed.Scores);
                if (schedule is not null)
                {
                    // TorchSharp's cosine schedule keeps its position privately: replay its steps, then put back the
                    // rates the checkpoint saved (the same doubles, as the schedule is deterministic).
                    var rates = optimizer.ParamGroups.Select(g => g.LearningRate).ToArray();
                    for (long s = 0; s < step; s++) schedule.step();
                    foreach (var (group, rate) in optimizer.ParamGroups.Zip(rates)) group.LearningRate = rate;
                }
            }
            for (int epoch = firstEpoch; epoch <= options.Epochs; epoch++)
            {
                training?.Invoke(true);
                var batches = MultiTaskBatches.ForEpoch(sizes, options.BatchSize, options.Seed, epoch);
                double sum = 0, gatedSum = 0;
                int gatedSteps = 0;
                for (int s = 0; s < batches.Count; s++, step++)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    using var scope = NewDisposeScope();
                    reseed?.Invoke(StableHash.Seed(options.Seed, method + " step", checked((int)step)));
                    optimizer.zero_grad();
                    var (loss, gatedRatio) = batchLoss(pixels, batches[s], step, totalSteps);
                    double value = loss.item<float>();
                    if (!double.IsFinite(value))
                        throw new InvalidOperationException($"{method}: the loss became {value} at epoch {epoch}, step {s + 1}; lower the learning rate.");
                    loss.backward();
                    nn.utils.clip_grad_norm_(parameters, options.GradientClipNorm);
                    optimizer.step();
                    schedule?.step();
                    sum += value;
                    if (gatedRatio is double g) (gatedSum, gatedSteps) = (gatedSum + g, gatedSteps + 1);
                    progress?.Report(new CompositionProgress(epoch, s + 1, batches.Count, value, null, gatedRatio));
                }
                losses.Add(sum / batches.Count);
                training?.Invoke(false);
                double score = double.NaN;
                if (select)
                {
                    var accuracy = CompositionEvaluator.Accuracy(engine, tasks, t => t.Selection, selectionCoefficients, pixels, options.EvaluationBatchSize, cancellationToken);
                    score = tasks.Select((t, i) => t.Normalise(accuracy[i])).Average();
                    scores.Add(score);
                    progress?.Report(new CompositionProgress(epoch, batches.Count, batches.Count, losses[^1], score,
                        gatedSteps > 0 ? gatedSum / gatedSteps : null, accuracy));
                }
                if (!select || score > bestScore)
                {
                    if (best is not null) foreach (var t in best.Values) t.Dispose();
                    best = state().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone().DetachFromDisposeScope());
                    (bestScore, bestEpoch) = (score, epoch);
                }
                if (directory is not null)
                    TrainingCheckpoint.Save(directory, method, fingerprint, new TrainingCheckpoint
                    {
                        Epoch = epoch, Step = step, Losses = losses, Scores = scores, BestScore = bestScore, BestEpoch = bestEpoch, Best = best!,
                    }, state(), optimizer);
            }
            using (no_grad())
            {
                var live = state();
                foreach (var (name, value) in best!) live[name].copy_(value);
            }
            training?.Invoke(false);
            return new TrainingRun(bestEpoch, losses, scores);
        }
        finally
        {
            if (best is not null) foreach (var t in best.Values) t.Dispose();
        }
    }

    /// <summary>
    /// What a checkpoint must agree on to be resumed: the options that change training (not the epochs unless the
    /// schedule depends on them, not the checkpoint directory or pixel caching), the method's other settings, the
    /// tasks and the shapes of the state tensors.
    /// </summary>
    private static string Fingerprint(CompositionEngine engine, IReadOnlyList<CompositionTask> tasks, CompositionTrainerOptions options,
        IReadOnlyDictionary<string, Tensor> state, bool cosineSchedule, JsonNode? settings)
    {
        var o = JsonSerializer.SerializeToNode(options, options.GetType())!.AsObject();
        o.Remove(nameof(CompositionTrainerOptions.CheckpointDirectory));
        o.Remove(nameof(CompositionTrainerOptions.CachePixels));
        // Without a schedule over all steps, more epochs simply continue the run.
        if (!cosineSchedule) o.Remove(nameof(CompositionTrainerOptions.Epochs));
        return new JsonObject
        {
            ["options"] = o,
            ["settings"] = settings?.DeepClone(),
            ["tasks"] = new JsonArray(tasks.Select(t => (JsonNode)$"{t.Name}:{t.Train.Count}:{t.Selection?.Count}").ToArray()),
            ["task_vectors"] = new JsonArray(engine.TaskNames.Select(n => (JsonNode)n!).ToArray()),
            ["state"] = new JsonObject(state.OrderBy(kv => kv.Key, StringComparer.Ordinal)
                .Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)$"{kv.Value.dtype}[{string.Join(",", kv.Value.shape)}]"))),
        }.ToJsonString();
    }
}
