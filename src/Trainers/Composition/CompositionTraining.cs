using Microsoft.ML.TaskVectors.Composition;
using Microsoft.ML.TaskVectors.Images;
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
/// The loop every learned composition shares: epochs of evenly mixed batches, AdamW with gradient
/// clipping (and optionally a cosine schedule), a NaN/Inf stop, progress, cancellation, scoring on the
/// selection splits after each epoch and restoring the best epoch's state at the end.
/// </summary>
internal static class CompositionTraining
{
    /// <param name="method">The method's name, for messages.</param>
    /// <param name="engine">The composition engine.</param>
    /// <param name="tasks">The tasks.</param>
    /// <param name="options">Epochs, batch, optimiser settings, seed.</param>
    /// <param name="parameters">What the optimiser trains.</param>
    /// <param name="batchLoss">(pixels, batch, step, total steps) → the batch's loss, inside the step's dispose scope.</param>
    /// <param name="selectionCoefficients">Test-time coefficients for pixels, to score the selection splits.</param>
    /// <param name="state">The tensors that define the learned model (parameters and buffers), live.</param>
    /// <param name="training">Switches modules between training (true) and evaluation (false) behaviour.</param>
    /// <param name="cosineSchedule">Whether the learning rate follows a cosine decay over all steps.</param>
    public static TrainingRun Run(string method, CompositionEngine engine, IReadOnlyList<CompositionTask> tasks, CompositionTrainerOptions options,
        IReadOnlyList<Parameter> parameters, Func<PixelSource, IReadOnlyList<MultiTaskBatches.Item>, long, long, Tensor> batchLoss,
        Func<Tensor, Tensor> selectionCoefficients, Func<IReadOnlyDictionary<string, Tensor>> state, Action<bool>? training,
        bool cosineSchedule, IProgress<CompositionProgress>? progress, CancellationToken cancellationToken)
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
        int bestEpoch = 0;
        bool select = tasks.All(t => t.Selection is not null);
        try
        {
            for (int epoch = 1; epoch <= options.Epochs; epoch++)
            {
                training?.Invoke(true);
                var batches = MultiTaskBatches.ForEpoch(sizes, options.BatchSize, options.Seed, epoch);
                double sum = 0;
                for (int s = 0; s < batches.Count; s++, step++)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    using var scope = NewDisposeScope();
                    optimizer.zero_grad();
                    var loss = batchLoss(pixels, batches[s], step, totalSteps);
                    double value = loss.item<float>();
                    if (!double.IsFinite(value))
                        throw new InvalidOperationException($"{method}: the loss became {value} at epoch {epoch}, step {s + 1}; lower the learning rate.");
                    loss.backward();
                    nn.utils.clip_grad_norm_(parameters, options.GradientClipNorm);
                    optimizer.step();
                    schedule?.step();
                    sum += value;
                    progress?.Report(new CompositionProgress(epoch, s + 1, batches.Count, value, null));
                }
                losses.Add(sum / batches.Count);
                training?.Invoke(false);
                double score = double.NaN;
                if (select)
                {
                    var accuracy = CompositionEvaluator.Accuracy(engine, tasks, t => t.Selection, selectionCoefficients, pixels, options.EvaluationBatchSize, cancellationToken);
                    score = tasks.Select((t, i) => t.Normalise(accuracy[i])).Average();
                    scores.Add(score);
                    progress?.Report(new CompositionProgress(epoch, batches.Count, batches.Count, losses[^1], score));
                }
                if (!select || score > bestScore)
                {
                    if (best is not null) foreach (var t in best.Values) t.Dispose();
                    best = state().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone().DetachFromDisposeScope());
                    (bestScore, bestEpoch) = (score, epoch);
                }
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
}
