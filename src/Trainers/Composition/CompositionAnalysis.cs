using Microsoft.ML.TaskVectors.Composition;
using Microsoft.ML.TaskVectors.Data;
using Microsoft.ML.TaskVectors.Images;
using Microsoft.ML.TaskVectors.Trainers.Tasks;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>Each sample's coefficients and gates, for analysis (which task vectors a sample draws on).</summary>
public static class CompositionAnalysis
{
    /// <summary>
    /// Per-coefficient uncertainty [B, N, M] of a sample-specific composition for pixels: the gate's U for the
    /// gated method, the posterior standard deviation σ(x) for the probabilistic ones; null otherwise.
    /// </summary>
    public static Tensor? Uncertainty(CompositionEngine engine, TrainedComposition composition, Tensor pixels)
    {
        if (composition is not TrainedComposition.SampleSpecific { Model: var model }) return null;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var output = engine.ForwardBase(pixels);
        var features = output.ImageEmbeds;
        Tensor? u = model.Variant switch
        {
            SampleSpecificVariant.Gated => GateUncertainty(model, features),
            SampleSpecificVariant.Gaussian or SampleSpecificVariant.SpikeAndSlab =>
                (0.5 * model.Network.Forward(features, Variational.InferenceHeads.LogVariance).LogVariance!).exp(),
            _ => null,
        };
        return u?.MoveToOuterDisposeScope();
    }

    private static Tensor GateUncertainty(SampleSpecificComposition model, Tensor features)
    {
        using var g = model.Gate!.Forward(features, model.Network.Mean(features), model.Network.Mean);
        return g.Uncertainty.clone();
    }

    /// <summary>
    /// Test-time coefficients [S, N, M] of every sample of <paramref name="dataset"/> (task-level methods
    /// repeat their one set) and, where the method has them, the gates and the uncertainty [S, N, M]
    /// (see <see cref="Uncertainty"/>); CPU tensors owned by the caller.
    /// </summary>
    public static (Tensor Coefficients, Tensor? Gates, Tensor? Uncertainty) Collect(CompositionEngine engine, TrainedComposition composition, LabeledImageDataset dataset,
        int batchSize = 64, CancellationToken cancellationToken = default)
    {
        var pixels = new PixelSource(ClipImagePreprocessor.For(engine.Config), cache: false);
        var coefficients = new List<Tensor>();
        var gates = new List<Tensor>();
        var uncertainty = new List<Tensor>();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        for (int start = 0; start < dataset.Count; start += batchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int n = Math.Min(batchSize, dataset.Count - start);
            var x = pixels.Batch(Enumerable.Range(start, n).Select(i => (dataset, i)).ToArray(), engine.Device);
            var (z, g) = composition.For(engine, x);
            coefficients.Add((z.dim() == 2 ? z.unsqueeze(0).expand(n, -1, -1) : z).cpu());
            if (g is not null) gates.Add(g.cpu());
            if (Uncertainty(engine, composition, x) is { } u) uncertainty.Add(u.cpu());
        }
        Tensor? Join(List<Tensor> parts) => parts.Count == 0 ? null : cat(parts, 0).MoveToOuterDisposeScope();
        return (Join(coefficients)!, Join(gates), Join(uncertainty));
    }
}
