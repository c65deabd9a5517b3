using Microsoft.ML.TaskVectors.Composition;
using Microsoft.ML.TaskVectors.Data;
using Microsoft.ML.TaskVectors.Images;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>Each sample's coefficients and gates, for analysis (which task vectors a sample draws on).</summary>
public static class CompositionAnalysis
{
    /// <summary>
    /// Test-time coefficients [S, N, M] of every sample of <paramref name="dataset"/> (task-level methods
    /// repeat their one set) and, for gated methods, the gates [S, N, M]; CPU tensors owned by the caller.
    /// </summary>
    public static (Tensor Coefficients, Tensor? Gates) Collect(CompositionEngine engine, TrainedComposition composition, LabeledImageDataset dataset,
        int batchSize = 64, CancellationToken cancellationToken = default)
    {
        var pixels = new PixelSource(ClipImagePreprocessor.For(engine.Config), cache: false);
        var coefficients = new List<Tensor>();
        var gates = new List<Tensor>();
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
        }
        var all = cat(coefficients, 0).MoveToOuterDisposeScope();
        return (all, gates.Count == 0 ? null : cat(gates, 0).MoveToOuterDisposeScope());
    }
}
