using Microsoft.ML.TaskVectors.Composition;
using Microsoft.ML.TaskVectors.Data;
using Microsoft.ML.TaskVectors.Trainers.Tasks;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>
/// The pre-trained model's image embedding of each sample, computed once and kept (the paper precomputes
/// them): the input of the inference networks of the sample-specific methods.
/// </summary>
internal sealed class FeatureCache(CompositionEngine engine, PixelSource pixels)
{
    private readonly Dictionary<(LabeledImageDataset, int), float[]> _features = new();

    public int Count => _features.Count;

    /// <summary>Features [B, D] of the items, on the engine's device; <paramref name="batchPixels"/> are their pixels when already loaded.</summary>
    public Tensor Get(IReadOnlyList<(LabeledImageDataset Dataset, int Index)> items, Tensor? batchPixels = null)
    {
        var missing = Enumerable.Range(0, items.Count).Where(i => !_features.ContainsKey(items[i])).ToArray();
        if (missing.Length > 0)
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var x = batchPixels is not null && missing.Length == items.Count
                ? batchPixels
                : pixels.Batch(missing.Select(i => items[i]).ToArray(), engine.Device);
            using var output = engine.ForwardBase(x);
            var embeds = output.ImageEmbeds.cpu();
            for (int k = 0; k < missing.Length; k++)
                _features[items[missing[k]]] = embeds[k].data<float>().ToArray();
        }
        int d = _features[items[0]].Length;
        var data = new float[items.Count * d];
        for (int i = 0; i < items.Count; i++) _features[items[i]].CopyTo(data, i * d);
        return tensor(data, [items.Count, d]).to(engine.Device);
    }
}
