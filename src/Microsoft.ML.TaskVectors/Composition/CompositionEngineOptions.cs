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
    /// Bytes of per-sample weights formed at once by <see cref="PerSampleStrategy.Materialize"/>: small
    /// enough to stay in cache, large enough that each product is efficient. Default 8 MiB (measured best on
    /// ViT-B/32 shapes between 6 and 12 MiB).
    /// </summary>
    public long TileBytes { get; set; } = 8L << 20;

    /// <summary>
    /// Fewest output rows per tile, whatever <see cref="TileBytes"/> says: thinner batched products run
    /// several times slower (measured on ViT-B/32 shapes at batch 64). Default 64.
    /// </summary>
    public long MinimumTileRows { get; set; } = 64;
}
