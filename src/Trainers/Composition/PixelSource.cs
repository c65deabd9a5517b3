using Microsoft.ML.TaskVectors.Data;
using Microsoft.ML.TaskVectors.Images;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>Preprocessed pixels of dataset images, optionally cached between epochs.</summary>
internal sealed class PixelSource(ClipImagePreprocessor preprocessor, bool cache)
{
    private readonly Dictionary<(LabeledImageDataset, int), float[]> _cache = new();

    public Tensor Batch(IReadOnlyList<(LabeledImageDataset Dataset, int Index)> items, Device device)
    {
        int values = preprocessor.ValuesPerImage, size = preprocessor.ImageSize;
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
        return tensor(data, [items.Count, 3, size, size]).to(device);
    }
}
