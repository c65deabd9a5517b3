using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Microsoft.ML.TaskVectors.Models;

/// <summary>
/// Where a CLIP forward pass takes its weights from, by Hugging Face name. A plain model answers with
/// its own tensors; a composition engine answers with θ0 + Σ z·τ, either one weight set for the batch or
/// one per sample (a leading batch dimension), and applies per-sample linear layers without ever
/// holding every sample's copy of the model.
/// </summary>
public abstract class ClipWeights
{
    /// <summary>
    /// The named tensor, in its own shape, or with a leading batch dimension when it differs per sample.
    /// </summary>
    public abstract Tensor Get(string name);

    /// <summary>
    /// y = x·Wᵀ (+ b) for the weight <c>{prefix}.weight</c> (flattened to [out, in] when it has more
    /// dimensions, as a patch-embedding convolution does) and, when <paramref name="bias"/>, <c>{prefix}.bias</c>.
    /// </summary>
    /// <param name="x">[B, T, in] or [B, in].</param>
    /// <param name="prefix">The layer's name without <c>.weight</c>/<c>.bias</c>.</param>
    /// <param name="bias">Whether the layer has a bias.</param>
    public abstract Tensor Linear(Tensor x, string prefix, bool bias);
}

/// <summary>Weights held as plain tensors (a model's own parameters, or a loaded or merged checkpoint).</summary>
public sealed class PlainClipWeights : ClipWeights
{
    private readonly IReadOnlyDictionary<string, Tensor> _tensors;

    /// <summary>Wraps tensors keyed by Hugging Face name (not copied, not owned).</summary>
    public PlainClipWeights(IReadOnlyDictionary<string, Tensor> tensors) => _tensors = tensors;

    /// <inheritdoc />
    public override Tensor Get(string name) =>
        _tensors.TryGetValue(name, out var t) ? t : throw new KeyNotFoundException($"No CLIP weight named '{name}'.");

    /// <inheritdoc />
    public override Tensor Linear(Tensor x, string prefix, bool bias)
    {
        var w = Get(prefix + ".weight");
        if (w.dim() > 2) w = w.flatten(1);
        return F.linear(x, w, bias ? Get(prefix + ".bias") : null);
    }
}
