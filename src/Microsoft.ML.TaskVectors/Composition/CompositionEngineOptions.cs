using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Composition;

/// <summary>Options of a <see cref="CompositionEngine"/>.</summary>
public sealed class CompositionEngineOptions
{
    /// <summary>Where θ0, τ and the computation live; the CPU when null.</summary>
    public Device? Device { get; set; }

    /// <summary>How per-sample linear layers are applied (default: chosen per layer).</summary>
    public PerSampleStrategy Strategy { get; set; } = PerSampleStrategy.Auto;

    /// <summary>
    /// On a CPU with AVX2 and FMA, run <see cref="PerSampleStrategy.Materialize"/> in the library's fused kernels,
    /// which form each sample's weights block by block inside the matrix product (default true). They keep their
    /// packed operands in per-thread buffers between calls, about five times one layer's largest activation
    /// (250 MB at batch 64 on ViT-B/32). False uses tiles of batched library products, the path GPUs and other
    /// CPUs take, sized by <see cref="TileBytes"/>.
    /// </summary>
    public bool FusedCpuKernels { get; set; } = true;

    /// <summary>
    /// Bytes of per-sample weights formed at once by <see cref="PerSampleStrategy.Materialize"/> when it runs as library products (a tile spans
    /// output rows and samples). Larger tiles make each batched product efficient; above 32 MB glibc would map
    /// every temporary afresh. Default 8 MiB: on ViT-B/32 at batch 16 and 64, 8 and 16 MiB measure the same within
    /// noise (2.1–2.4× the plain forward); budgets of a few MiB, leaving a few samples per tile, are several times slower.
    /// </summary>
    public long TileBytes { get; set; } = 8L << 20;

    /// <summary>
    /// Fewest output rows per tile, whatever <see cref="TileBytes"/> says: thinner batched products run
    /// several times slower (measured on ViT-B/32 shapes at batch 64). Default 64.
    /// </summary>
    public long MinimumTileRows { get; set; } = 64;
}
