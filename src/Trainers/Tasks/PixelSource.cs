using Microsoft.ML.TaskVectors.Data;
using Microsoft.ML.TaskVectors.Images;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.Tasks;

/// <summary>
/// Turns dataset items into pixel tensors [count, 3, size, size]: decoded in parallel (datasets are safe to read from
/// several threads), then CLIP-preprocessed, optionally cached between epochs, or augmented.
/// </summary>
internal sealed class PixelSource(ClipImagePreprocessor preprocessor, bool cache = false)
{
    private readonly Dictionary<(LabeledImageDataset, int), float[]> _cache = new();

    /// <summary>Preprocessed pixels of items drawn from any datasets.</summary>
    public Tensor Batch(IReadOnlyList<(LabeledImageDataset Dataset, int Index)> items, Device device)
    {
        int values = preprocessor.ValuesPerImage;
        var data = new float[items.Count * values];
        Parallel.For(0, items.Count, i =>
        {
            var (dataset, index) = items[i];
            float[]? pixels;
            lock (_cache) _cache.TryGetValue((dataset, index), out pixels);
            if (pixels is null)
            {
                pixels = preprocessor.Process(dataset.LoadImage(index));
                if (cache) lock (_cache) _cache[(dataset, index)] = pixels;
            }
            pixels.CopyTo(data, i * values);
        });
        return ToDevice(data, items.Count, preprocessor.ImageSize, device);
    }

    /// <summary>Preprocessed pixels of one dataset's items.</summary>
    public Tensor Batch(LabeledImageDataset dataset, IReadOnlyList<int> indices, Device device) =>
        Batch(indices.Select(i => (dataset, i)).ToArray(), device);

    /// <summary>
    /// Augmented pixels of the items, choices drawn from <paramref name="random"/> item by item in order (so the result
    /// does not depend on threading).
    /// </summary>
    public static Tensor Augmented(LabeledImageDataset dataset, IReadOnlyList<int> indices, ImageAugmentation augmentation, Random random, Device device)
    {
        var images = new RgbImage[indices.Count];
        Parallel.For(0, indices.Count, i => images[i] = dataset.LoadImage(indices[i]));
        var data = new float[checked(indices.Count * augmentation.ValuesPerImage)];
        augmentation.ApplyBatch(images, random, data);
        return ToDevice(data, indices.Count, augmentation.ImageSize, device);
    }

    /// <summary>The labels of the items as an int64 tensor on <paramref name="device"/>.</summary>
    public static Tensor Labels(LabeledImageDataset dataset, IReadOnlyList<int> indices, Device device)
    {
        var labels = new long[indices.Count];
        for (int i = 0; i < labels.Length; i++) labels[i] = dataset.GetLabel(indices[i]);
        using var cpu = tensor(labels);
        return cpu.to(device);
    }

    private static Tensor ToDevice(float[] data, int count, int size, Device device)
    {
        var cpu = tensor(data, [count, 3, size, size]);
        if (device.type == TorchSharp.DeviceType.CPU) return cpu;
        using (cpu) return cpu.to(device);
    }
}
