using Microsoft.ML.TaskVectors.Composition;
using Microsoft.ML.TaskVectors.Data;
using Microsoft.ML.TaskVectors.Images;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Trainers.Tasks;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>One task's score.</summary>
/// <param name="Task">The task.</param>
/// <param name="Accuracy">Fraction correct in [0, 1].</param>
/// <param name="GatedRatio">Mean fraction of open gates over the task's samples; null for ungated methods.</param>
public sealed record TaskScore(string Task, double Accuracy, double? GatedRatio);

/// <summary>Per-task accuracy of a composed model, each task scored through its own head.</summary>
public static class CompositionEvaluator
{
    /// <summary>Accuracy (and gated ratio, for gated methods) of a trained composition on each task's <paramref name="split"/>.</summary>
    public static IReadOnlyList<TaskScore> Evaluate(CompositionEngine engine, IReadOnlyList<CompositionTask> tasks, Func<CompositionTask, LabeledImageDataset?> split,
        TrainedComposition composition, int batchSize = 64, CancellationToken cancellationToken = default)
    {
        var pixels = new PixelSource(ClipImagePreprocessor.For(engine.Config), cache: false);
        var gateSums = new double[tasks.Count];
        var gateCounts = new long[tasks.Count];
        bool gated = false;
        var accuracy = Score(engine, tasks, split, (task, x) =>
        {
            var (output, gates) = composition.Encode(engine, x);
            if (gates is not null)
            {
                gated = true;
                // Mean over the (task, block) coefficients of each sample, summed over samples.
                gateSums[task] += gates.to(float64).mean([1L, 2L]).sum().item<double>();
                gateCounts[task] += gates.shape[0];
            }
            return output;
        }, pixels, batchSize, cancellationToken);
        return tasks.Select((t, i) => new TaskScore(t.Name, accuracy[i], gated ? gateSums[i] / Math.Max(1, gateCounts[i]) : null)).ToArray();
    }

    /// <summary>
    /// Accuracy on each task's <paramref name="split"/> of the vision tower composed with the coefficients
    /// <paramref name="coefficients"/> gives for a batch of pixels ([N, M] for the batch, or [B, N, M]);
    /// null coefficients mean the pre-trained model.
    /// </summary>
    public static IReadOnlyList<double> Accuracy(CompositionEngine engine, IReadOnlyList<CompositionTask> tasks,
        Func<CompositionTask, LabeledImageDataset?> split, Func<Tensor, Tensor>? coefficients, int batchSize = 64,
        CancellationToken cancellationToken = default) =>
        Accuracy(engine, tasks, split, coefficients, new PixelSource(ClipImagePreprocessor.For(engine.Config), cache: false), batchSize, cancellationToken);

    internal static IReadOnlyList<double> Accuracy(CompositionEngine engine, IReadOnlyList<CompositionTask> tasks,
        Func<CompositionTask, LabeledImageDataset?> split, Func<Tensor, Tensor>? coefficients, PixelSource pixels, int batchSize,
        CancellationToken cancellationToken) =>
        Score(engine, tasks, split, (_, x) => coefficients is null ? engine.ForwardBase(x) : engine.Forward(x, coefficients(x)), pixels, batchSize, cancellationToken);

    /// <summary>The evaluation loop; <paramref name="encode"/> gets the task's index with each batch of pixels.</summary>
    private static double[] Score(CompositionEngine engine, IReadOnlyList<CompositionTask> tasks,
        Func<CompositionTask, LabeledImageDataset?> split, Func<int, Tensor, ClipVisionOutput> encode, PixelSource pixels, int batchSize,
        CancellationToken cancellationToken)
    {
        var result = new double[tasks.Count];
        using var noGrad = no_grad();
        for (int t = 0; t < tasks.Count; t++)
        {
            var data = split(tasks[t]) ?? throw new ArgumentException($"Task '{tasks[t].Name}' has no split to evaluate on.", nameof(split));
            long correct = 0;
            for (int start = 0; start < data.Count; start += batchSize)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                int n = Math.Min(batchSize, data.Count - start);
                var x = pixels.Batch(Enumerable.Range(start, n).Select(i => (data, i)).ToArray(), engine.Device);
                using var output = encode(t, x);
                var predicted = tasks[t].Head.Predict(output.ImageEmbeds).cpu();
                var labels = tensor(Enumerable.Range(start, n).Select(i => (long)data.GetLabel(i)).ToArray());
                correct += predicted.eq(labels).sum().item<long>();
            }
            result[t] = data.Count == 0 ? 0 : (double)correct / data.Count;
        }
        return result;
    }
}
