using Microsoft.ML.TaskVectors.Data;
using Microsoft.ML.TaskVectors.Heads;
using Microsoft.ML.TaskVectors.Images;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Trainers.Tasks;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.FineTuning;

/// <summary>
/// A CLIP vision tower over a whole dataset split with CLIP's evaluation preprocessing (resize, centre crop,
/// normalise): image embeddings, or top-1 accuracy through a head. Runs under no_grad, batch by batch.
/// </summary>
public static class TaskEvaluation
{
    /// <summary>
    /// The unnormalised projected image embeddings of every item, in dataset order: a float32 CPU tensor
    /// [count, projection] owned by the caller.
    /// </summary>
    /// <param name="model">The model; it computes on its own device.</param>
    /// <param name="dataset">The items.</param>
    /// <param name="batchSize">Images per forward pass.</param>
    /// <param name="progress">Receives the fraction of items done.</param>
    /// <param name="cancellationToken">Stops between batches.</param>
    /// <exception cref="ArgumentException">The dataset is empty or the batch size is below 1.</exception>
    public static Tensor Embed(ClipModel model, LabeledImageDataset dataset, int batchSize = 256,
        IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        Check(model, dataset, batchSize);
        var pixels = new PixelSource(ClipImagePreprocessor.For(model.Config.Vision));
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var output = empty(dataset.Count, model.Config.ProjectionDim, ScalarType.Float32);
        progress?.Report(0);
        for (int start = 0; start < dataset.Count; start += batchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var step = NewDisposeScope();
            var indices = Range(start, Math.Min(batchSize, dataset.Count - start));
            var embeds = model.EncodeImage(pixels.Batch(dataset, indices, model.Device));
            output.narrow(0, start, indices.Length).copy_(embeds);
            progress?.Report((double)(start + indices.Length) / dataset.Count);
        }
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>The fraction of items whose argmax logit through <paramref name="head"/> is their label.</summary>
    /// <param name="model">The model; it computes on its own device, where the head must be too.</param>
    /// <param name="head">A head for the dataset's classes.</param>
    /// <param name="dataset">The items.</param>
    /// <param name="batchSize">Images per forward pass.</param>
    /// <param name="progress">Receives the fraction of items done.</param>
    /// <param name="cancellationToken">Stops between batches.</param>
    /// <exception cref="ArgumentException">The dataset is empty, the batch size is below 1, or the head has another number of classes.</exception>
    public static double Accuracy(ClipModel model, ClassificationHead head, LabeledImageDataset dataset, int batchSize = 256,
        IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        Check(model, dataset, batchSize);
        ArgumentNullException.ThrowIfNull(head);
        if (head.ClassCount != dataset.ClassNames.Count)
            throw new ArgumentException($"The head has {head.ClassCount} classes but {dataset} has {dataset.ClassNames.Count}.", nameof(head));
        var pixels = new PixelSource(ClipImagePreprocessor.For(model.Config.Vision));
        using var noGrad = no_grad();
        long correct = 0;
        progress?.Report(0);
        for (int start = 0; start < dataset.Count; start += batchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var step = NewDisposeScope();
            var indices = Range(start, Math.Min(batchSize, dataset.Count - start));
            var embeds = model.EncodeImage(pixels.Batch(dataset, indices, model.Device));
            correct += head.Predict(embeds).eq(PixelSource.Labels(dataset, indices, model.Device)).sum().item<long>();
            progress?.Report((double)(start + indices.Length) / dataset.Count);
        }
        return (double)correct / dataset.Count;
    }

    private static void Check(ClipModel model, LabeledImageDataset dataset, int batchSize)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(dataset);
        if (dataset.Count == 0) throw new ArgumentException($"{dataset} has no images.", nameof(dataset));
        if (batchSize < 1) throw new ArgumentException($"The batch size must be at least 1; got {batchSize}.", nameof(batchSize));
    }

    private static int[] Range(int start, int count) => Enumerable.Range(start, count).ToArray();
}
