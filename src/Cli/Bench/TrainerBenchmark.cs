using System.Diagnostics;
using System.Text.Json.Nodes;
using Microsoft.ML.TaskVectors.Composition;
using Microsoft.ML.TaskVectors.Data;
using Microsoft.ML.TaskVectors.Heads;
using Microsoft.ML.TaskVectors.Images;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Runtime;
using Microsoft.ML.TaskVectors.Trainers.Composition;
using Microsoft.ML.TaskVectors.Trainers.FineTuning;
using Microsoft.ML.TaskVectors.Trainers.Tasks;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Cli.Bench;

/// <summary>
/// Training throughput of each learned composition against a fine-tuning step (forward, backward and AdamW on the
/// vision tower through a frozen head) at the same backbone and batch: random weights, task vectors, heads and images.
/// Each trainer runs for real; a step's time is the time between two of its step reports, and the first pass over the
/// images (which preprocesses them, and computes the pre-trained features of the sample-specific methods) is not timed.
/// </summary>
internal static class TrainerBenchmark
{
    /// <summary>The composition trainers measured, by CLI name.</summary>
    public static IReadOnlyList<string> Methods { get; } = ["atlas", "prob-task", "atlas-gated", "det-sample", "vi-gaussian", "spike-slab", "vtvc", "adamerging-task"];

    /// <summary>The fine-tuning baseline's name in the output.</summary>
    public const string FineTuning = "fine-tuning";

    private const int Classes = 10;

    /// <summary>One measured method.</summary>
    /// <param name="Name">The method.</param>
    /// <param name="StepSeconds">Median time of a timed step.</param>
    /// <param name="SamplesPerSecond">Images per second at that step time.</param>
    /// <param name="RatioToFineTuning">Step time ÷ the fine-tuning step time.</param>
    /// <param name="TimedSteps">Steps the median is over.</param>
    public sealed record Timing(string Name, double StepSeconds, double SamplesPerSecond, double RatioToFineTuning, int TimedSteps);

    /// <summary>Measures every method; returns the JSON summary (key <c>vtvc_step_ratio</c>: vtvc's step time ÷ fine-tuning's).</summary>
    /// <param name="architecture">The architecture's name, for the output.</param>
    /// <param name="config">The CLIP shapes.</param>
    /// <param name="tasks">N, the number of task vectors (and tasks).</param>
    /// <param name="batch">Images per step; rounded down to a multiple of N for the composition trainers, which mix the tasks evenly.</param>
    /// <param name="steps">Timed steps per method (at least 1).</param>
    /// <param name="device">Where to train.</param>
    /// <param name="log">Receives a human-readable table.</param>
    /// <param name="cancellationToken">Stops between steps.</param>
    public static JsonObject Run(string architecture, ClipConfig config, int tasks, int batch, int steps, Device device, TextWriter log,
        CancellationToken cancellationToken)
    {
        if (tasks < 1) throw new ArgumentOutOfRangeException(nameof(tasks), tasks, "--tasks must be at least 1.");
        if (batch < tasks) throw new ArgumentOutOfRangeException(nameof(batch), batch, $"--batch must be at least --tasks ({tasks}), one image per task.");
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, "--steps must be at least 1.");
        var vision = config.Vision;
        int perTask = batch / tasks, mixedBatch = perTask * tasks;
        log.WriteLine($"{architecture}: {vision.Layers} layers, width {vision.Width}, {vision.Tokens} tokens; N = {tasks}; batch {batch}; {steps} timed steps; device {device}");

        using var model = ClipModel.CreateRandom(config, seed: 0, withText: false);
        model.To(device);
        var shapes = model.Vision.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        // Two steps per pass over the images: the first pass warms up (preprocessing, feature caches), the rest are timed.
        const int stepsPerEpoch = 2;
        var rng = new Random(3);
        var data = Enumerable.Range(0, tasks).Select(t => Dataset($"task{t}", perTask * stepsPerEpoch, vision.ImageSize, rng)).ToArray();
        var results = new List<(string Name, double Seconds, int Timed)>();
        using (var engine = CompositionEngine.Create(model, new RandomTaskVectorSet(shapes, tasks, seed: 1),
            options: new CompositionEngineOptions { Device = device }, cancellationToken: cancellationToken))
        {
            var heads = Enumerable.Range(0, tasks).Select(t => Head(config.ProjectionDim, (ulong)(10 + t)).To(device)).ToArray();
            try
            {
                var compositionTasks = data.Select((d, t) => new CompositionTask(d.Name, d, heads[t])).ToArray();
                int epochs = 1 + (steps + stepsPerEpoch - 1) / stepsPerEpoch;
                foreach (var method in Methods)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var clock = new StepClock(stepsPerEpoch);
                    if (method == "adamerging-task")
                    {
                        var options = new AdaMergingOptions { Steps = epochs * stepsPerEpoch, BatchSize = mixedBatch };
                        new AdaMergingTrainer(options).Fit(engine, compositionTasks, null, clock.Progress(), cancellationToken).Coefficients.Dispose();
                    }
                    else
                    {
                        using var trained = CompositionTrainers.Train(method, engine, compositionTasks, seed: 0, epochs: epochs, batchSize: mixedBatch,
                            progress: clock.Progress(), cancellationToken: cancellationToken);
                    }
                    results.Add((method, clock.Median, clock.Timed));
                    log.WriteLine($"  {method,-16} {clock.Median * 1000,9:F1} ms/step");
                }
            }
            finally
            {
                foreach (var h in heads) h.Dispose();
            }
        }

        // Last: fine-tuning changes the model's weights. No augmentation, so both sides feed the same preprocessed pixels.
        cancellationToken.ThrowIfCancellationRequested();
        var fineTuneClock = new StepClock(stepsPerEpoch);
        using (var head = Head(config.ProjectionDim, 9))
        {
            var train = Dataset("fine-tune", batch * stepsPerEpoch, vision.ImageSize, rng);
            var validation = Dataset("fine-tune", 1, vision.ImageSize, rng, DatasetSplit.Validation);
            var fineTuner = new FineTuner(new FineTuningOptions
            {
                BatchSize = batch, Steps = stepsPerEpoch * (1 + (steps + stepsPerEpoch - 1) / stepsPerEpoch), WarmupSteps = 1,
                Augmentation = null, EvaluatePretrained = false, EvaluateEveryEpoch = false, EvaluationBatchSize = 1,
            });
            var progress = fineTuneClock.Progress();
            fineTuner.Train(model, TaskData.Create("fine-tune", train, validation, null), head,
                new SynchronousProgress<FineTuningProgress>(p =>
                {
                    if (p.Phase == FineTuningPhase.Training) progress.Report(default);
                }), cancellationToken);
        }
        results.Add((FineTuning, fineTuneClock.Median, fineTuneClock.Timed));
        log.WriteLine($"  {FineTuning,-16} {fineTuneClock.Median * 1000,9:F1} ms/step");

        double reference = fineTuneClock.Median;
        var timings = results.Select(r => new Timing(r.Name, r.Seconds, (r.Name == FineTuning ? batch : mixedBatch) / r.Seconds, r.Seconds / reference, r.Timed)).ToArray();
        log.WriteLine();
        log.WriteLine($"  {"method",-16} {"ms/step",9} {"samples/s",10} {"× fine-tuning",14}");
        foreach (var t in timings)
            log.WriteLine($"  {t.Name,-16} {t.StepSeconds * 1000,9:F1} {t.SamplesPerSecond,10:F1} {t.RatioToFineTuning,14:F2}");
        return new JsonObject
        {
            ["benchmark"] = "trainers",
            ["arch"] = architecture,
            ["tasks"] = tasks,
            ["batch"] = batch,
            ["composition_batch"] = mixedBatch,
            ["timed_steps"] = steps,
            ["device"] = device.ToString(),
            ["threads"] = get_num_threads(),
            ["fine_tuning_augmentation"] = false,
            ["methods"] = new JsonObject(timings.Select(t => KeyValuePair.Create(t.Name, (JsonNode?)new JsonObject
            {
                ["step_seconds"] = t.StepSeconds,
                ["samples_per_second"] = t.SamplesPerSecond,
                ["ratio_to_fine_tuning"] = t.RatioToFineTuning,
                ["timed_steps"] = t.TimedSteps,
            }))),
            ["vtvc_step_ratio"] = timings.Single(t => t.Name == "vtvc").RatioToFineTuning,
        };
    }

    private static InMemoryImageDataset Dataset(string name, int count, int size, Random rng, DatasetSplit split = DatasetSplit.Train)
    {
        var images = Enumerable.Range(0, count).Select(_ =>
        {
            var pixels = new byte[size * size * 3];
            rng.NextBytes(pixels);
            return new RgbImage(size, size, pixels);
        }).ToArray();
        var labels = Enumerable.Range(0, count).Select(_ => rng.Next(Classes)).ToArray();
        return new InMemoryImageDataset(name, split, Enumerable.Range(0, Classes).Select(c => $"c{c}").ToArray(), images, labels);
    }

    private static LinearHead Head(int embeddingDim, ulong seed)
    {
        using var generator = new Generator(seed);
        return new LinearHead(randn(Classes, embeddingDim, generator: generator), null, Enumerable.Range(0, Classes).Select(c => $"c{c}").ToArray());
    }

    /// <summary>Times the intervals between step reports after the first <c>warmUp</c> steps.</summary>
    private sealed class StepClock(int warmUp)
    {
        private readonly List<double> _seconds = new();
        private readonly Stopwatch _watch = new();
        private int _reports;

        public int Timed => _seconds.Count;

        public double Median
        {
            get
            {
                if (_seconds.Count == 0) throw new InvalidOperationException("No step was timed.");
                var sorted = _seconds.Order().ToArray();
                return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
            }
        }

        /// <summary>Counts step reports (epoch reports, with a selection score, are not steps).</summary>
        public IProgress<CompositionProgress> Progress() => new SynchronousProgress<CompositionProgress>(p =>
        {
            if (p.SelectionScore is not null) return;
            _reports++;
            if (_reports > warmUp) _seconds.Add(_watch.Elapsed.TotalSeconds);
            _watch.Restart();
        });
    }
}
