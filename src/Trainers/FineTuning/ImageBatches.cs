using Microsoft.ML.TaskVectors.Data;
using Microsoft.ML.TaskVectors.Images;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.FineTuning;

/// <summary>Turns dataset items into pixel tensors: decoded in parallel, then preprocessed or augmented.</summary>
internal static class ImageBatches
{
    /// <summary>Decodes the items at <paramref name="indices"/> in parallel (datasets are safe to read from several threads).</summary>
    public static RgbImage[] Decode(LabeledImageDataset dataset, IReadOnlyList<int> indices)
    {
        var images = new RgbImage[indices.Count];
        Parallel.For(0, indices.Count, i => images[i] = dataset.LoadImage(indices[i]));
        return images;
    }

    /// <summary>CLIP's evaluation preprocessing of the items: [count, 3, size, size] on <paramref name="device"/>.</summary>
    public static Tensor Evaluation(LabeledImageDataset dataset, IReadOnlyList<int> indices, ClipImagePreprocessor preprocessor, Device device)
    {
        var data = preprocessor.ProcessBatch(Decode(dataset, indices));
        return ToDevice(data, indices.Count, preprocessor.ImageSize, device);
    }

    /// <summary>
    /// Augmented pixels of the items, choices drawn from <paramref name="random"/> item by item in order (so the result
    /// does not depend on threading).
    /// </summary>
    public static Tensor Augmented(LabeledImageDataset dataset, IReadOnlyList<int> indices, ImageAugmentation augmentation, Random random, Device device)
    {
        var data = new float[checked(indices.Count * augmentation.ValuesPerImage)];
        augmentation.ApplyBatch(Decode(dataset, indices), random, data);
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
