using System.Text.Json.Nodes;
using Microsoft.ML.TaskVectors.Composition;
using Microsoft.ML.TaskVectors.Merging;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>The learned composition methods by name: one entry point for the CLI and for experiments.</summary>
public static class CompositionTrainers
{
    /// <summary>The sample-specific methods and their variants.</summary>
    public static IReadOnlyDictionary<string, SampleSpecificVariant> SampleSpecific { get; } = new Dictionary<string, SampleSpecificVariant>
    {
        ["det-sample"] = SampleSpecificVariant.Deterministic,
        ["vi-gaussian"] = SampleSpecificVariant.Gaussian,
        ["spike-slab"] = SampleSpecificVariant.SpikeAndSlab,
        ["vtvc"] = SampleSpecificVariant.Gated,
    };

    /// <summary>WUDI: data-free; merges each 2-D weight's task vectors by optimisation (<see cref="WudiMerging"/>).</summary>
    public const string WudiName = "wudi";

    /// <summary>Every method <see cref="Train"/> accepts.</summary>
    public static IReadOnlyList<string> Names { get; } = ["atlas", "prob-task", "atlas-gated", .. SampleSpecific.Keys, "adamerging-task", "adamerging-layer", WudiName, "negation"];

    /// <summary>
    /// Trains <paramref name="method"/> on the tasks with its defaults, overriding the seed and, when given,
    /// the epochs (AdaMerging: steps = 25 × epochs); with <paramref name="checkpointDirectory"/> training writes a
    /// checkpoint there after each epoch (AdaMerging: every 25 steps) and continues from one it finds.
    /// </summary>
    /// <remarks>
    /// <c>negation</c> forgets the first task (the target) while keeping the others (the controls); see <see cref="TaskNegationTrainer"/>.
    /// <c>wudi</c> reads no data: it merges the engine's task vectors tensor by tensor with <see cref="WudiMerging"/>'s defaults
    /// (300 Adam steps per 2-D weight, or 25 × <paramref name="epochs"/>) and reports progress per tensor.
    /// </remarks>
    /// <exception cref="ArgumentException">Unknown method; the message lists the known ones.</exception>
    public static TrainedComposition Train(string method, CompositionEngine engine, IReadOnlyList<CompositionTask> tasks,
        long seed = 0, int? epochs = null, int? batchSize = null, IProgress<CompositionProgress>? progress = null, CancellationToken cancellationToken = default,
        string? checkpointDirectory = null)
    {
        T Configure<T>(T options) where T : CompositionTrainerOptions => options with
        {
            Seed = seed, Epochs = epochs ?? options.Epochs, BatchSize = batchSize ?? options.BatchSize, CheckpointDirectory = checkpointDirectory,
        };
        JsonObject Describe(CompositionTrainerOptions o, int bestEpoch) =>
            new() { ["seed"] = seed, ["epochs"] = o.Epochs, ["best_epoch"] = bestEpoch, ["batch_size"] = o.BatchSize };

        if (method == "atlas")
        {
            var options = Configure(new CompositionTrainerOptions());
            var result = new AtlasTrainer(options).Fit(engine, tasks, progress, cancellationToken);
            return new TrainedComposition.TaskLevel(method, result.Coefficients, Describe(options, result.BestEpoch));
        }
        if (method == "prob-task")
        {
            var options = Configure(new CompositionTrainerOptions());
            var result = new ProbabilisticTaskTrainer(options).Fit(engine, tasks, progress, cancellationToken);
            return new TrainedComposition.TaskLevel(method, result.Coefficients, Describe(options, result.BestEpoch));
        }
        if (method == "atlas-gated")
        {
            var options = Configure(new CompositionTrainerOptions());
            var (result, gates) = new GatedAtlasTrainer(options).Fit(engine, tasks, progress, cancellationToken);
            return new TrainedComposition.TaskLevel(method, result.Coefficients, Describe(options, result.BestEpoch), gates);
        }
        if (method == "negation")
        {
            // The first task is the target (forgotten), the others are controls (kept).
            var options = Configure(new TaskNegationOptions());
            var result = new TaskNegationTrainer(options).Fit(engine, 0, tasks, progress, cancellationToken);
            return new TrainedComposition.TaskLevel(method, result.Coefficients, new JsonObject
            {
                ["seed"] = seed, ["epochs"] = options.Epochs, ["batch_size"] = options.BatchSize, ["best_epoch"] = result.Chosen.Epoch,
                ["target"] = tasks[0].Name, ["target_threshold_scale"] = result.Chosen.TargetThresholdScale,
                ["target_accuracy_before"] = result.Before.Target, ["target_accuracy_after"] = result.After.Target,
                ["control_accuracy_before"] = result.Before.Control, ["control_accuracy_after"] = result.After.Control,
                ["control_constraint_met"] = result.ControlConstraintMet,
            }, result.Gates);
        }
        if (SampleSpecific.TryGetValue(method, out var variant))
        {
            var options = Configure(new SampleSpecificOptions { Variant = variant });
            var trainer = new SampleSpecificTrainer(options);
            var model = trainer.Fit(engine, tasks, progress, cancellationToken);
            var json = trainer.OptionsJson();
            json["hidden_width"] = model.Network.HiddenWidth;
            json["best_epoch"] = model.BestEpoch;
            return new TrainedComposition.SampleSpecific(model, json);
        }
        if (method == WudiName) return TrainWudi(engine, seed, epochs, progress, cancellationToken);
        if (method is "adamerging-task" or "adamerging-layer")
        {
            var options = new AdaMergingOptions
            {
                Granularity = method == "adamerging-task" ? AdaMergingGranularity.TaskWise : AdaMergingGranularity.LayerWise,
                Seed = seed,
                Steps = epochs is int e ? 25 * e : 500,
                BatchSize = batchSize ?? 64,
                CheckpointDirectory = checkpointDirectory,
            };
            // AdaMerging adapts on unlabelled images: each task's selection split (its test images) when present.
            var (z, _) = new AdaMergingTrainer(options).Fit(engine, tasks, t => t.Selection ?? t.Train, progress, cancellationToken);
            return new TrainedComposition.TaskLevel(method, z, new JsonObject { ["seed"] = seed, ["steps"] = options.Steps });
        }
        throw new ArgumentException($"Unknown composition method '{method}'; known: {string.Join(", ", Names)}.", nameof(method));
    }

    private static TrainedComposition TrainWudi(CompositionEngine engine, long seed, int? epochs, IProgress<CompositionProgress>? progress,
        CancellationToken cancellationToken)
    {
        // On the engine's device: WUDI's Adam steps are matrix products, GPU work.
        var wudi = epochs is int e ? new WudiMerging(steps: 25 * e, device: engine.Device) : new WudiMerging(device: engine.Device);
        var taskVectors = engine.TaskVectors;
        var merged = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            int done = 0;
            foreach (var name in taskVectors.TensorNames)
            {
                cancellationToken.ThrowIfCancellationRequested();
                merged[name] = wudi.MergeTensor(name, taskVectors);
                progress?.Report(new CompositionProgress(1, ++done, taskVectors.TensorNames.Count, double.NaN, null));
            }
            // WUDI draws nothing at random; the seed is recorded with the other options for the record.
            return new TrainedComposition.Merged(WudiName, engine, merged, new JsonObject
            {
                ["seed"] = seed, ["learning_rate"] = wudi.LearningRate, ["steps"] = wudi.Steps,
            });
        }
        finally
        {
            foreach (var t in merged.Values) t.Dispose();
        }
    }
}
