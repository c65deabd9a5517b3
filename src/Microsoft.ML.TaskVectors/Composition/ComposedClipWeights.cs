using Microsoft.ML.TaskVectors.Models;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Microsoft.ML.TaskVectors.Composition;

/// <summary>
/// Weights θ0 + Σ z·τ for one set of coefficients: flat [1, N·M] (one weight set for the batch) or
/// [B, N·M] (one per sample). Composed tensors are formed when asked for and not kept.
/// </summary>
internal sealed class ComposedClipWeights : ClipWeights
{
    private readonly CompositionEngine _engine;
    private readonly Tensor _flat;
    private readonly bool _perSample;
    private readonly PerSampleStrategy _strategy;

    public ComposedClipWeights(CompositionEngine engine, Tensor flatCoefficients, bool perSample, PerSampleStrategy strategy)
    {
        _engine = engine;
        _flat = flatCoefficients;
        _perSample = perSample;
        _strategy = strategy;
    }

    public override Tensor Get(string name)
    {
        if (!_engine.Composed.TryGetValue(name, out var composed)) return _engine.Fixed.Get(name);
        var mixed = composed.Mixing(_flat).mm(composed.Stack);
        return _perSample ? mixed.view([_flat.shape[0], .. composed.Shape]) : mixed.view(composed.Shape);
    }

    public override Tensor Linear(Tensor x, string prefix, bool bias)
    {
        var y = Product(x, prefix + ".weight");
        if (!bias) return y;
        var b = Get(prefix + ".bias");
        return y + (b.dim() == 1 || y.dim() == 2 ? b : b.unsqueeze(1));
    }

    private Tensor Product(Tensor x, string weightName)
    {
        if (!_engine.Composed.TryGetValue(weightName, out var composed))
        {
            var w = _engine.Fixed.Get(weightName);
            return F.linear(x, w.dim() > 2 ? w.flatten(1) : w);
        }
        long outFeatures = composed.Shape[0], inFeatures = composed.ElementCount / outFeatures;
        if (!_perSample) return F.linear(x, Get(weightName).view(outFeatures, inFeatures));

        var mixing = composed.Mixing(_flat);
        var tokens = x.dim() == 2 ? x.unsqueeze(1) : x;
        var strategy = _strategy == PerSampleStrategy.Auto
            ? (tokens.shape[1] == 1 ? PerSampleStrategy.Branch : PerSampleStrategy.Materialize)
            : _strategy;
        Tensor y;
        if (strategy == PerSampleStrategy.Materialize)
        {
            // Below a few dozen rows each batched product is too thin to run efficiently, whatever the cache;
            // past that, the tile spans as many samples as fit the byte budget.
            long rowBytes = inFeatures * tokens.element_size();
            long tileRows = Math.Clamp(_engine.Options.TileBytes / (tokens.shape[0] * rowBytes),
                Math.Min(_engine.Options.MinimumTileRows, outFeatures), outFeatures);
            long batchChunk = Math.Clamp(_engine.Options.TileBytes / (tileRows * rowBytes), 1, tokens.shape[0]);
            bool fused = _engine.UsesFusedKernels && tokens.dtype == ScalarType.Float32;
            y = PerSampleLinear.Apply(tokens, mixing, new PerSampleLinear.Plan(outFeatures, inFeatures, tileRows, batchChunk, composed.Stack, fused));
        }
        else
        {
            // Every row of the stack applied to every token, then mixed per sample: [B, T, R+1, out] → [B, T, out].
            long b = tokens.shape[0], t = tokens.shape[1], r = composed.Stack.shape[0];
            var all = F.linear(tokens, composed.Stack.view(r * outFeatures, inFeatures)).view(b, t, r, outFeatures);
            y = all.mul(mixing.view(b, 1, r, 1)).sum(2);
        }
        return x.dim() == 2 ? y.squeeze(1) : y;
    }
}
