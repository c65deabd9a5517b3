namespace Microsoft.ML.TaskVectors.Composition;

/// <summary>How a linear layer with per-sample composed weights W_b = W0 + Σt z[b,t]·τt is applied.</summary>
public enum PerSampleStrategy
{
    /// <summary>Pick the cheaper strategy for each layer from its shapes.</summary>
    Auto,

    /// <summary>
    /// Form each sample's weights one tile of output rows at a time as one batched product and apply
    /// them with a batched matmul while the tile is still in cache; cost ≈ (1 + N/T) plain forwards.
    /// </summary>
    Materialize,

    /// <summary>
    /// y = x·W0ᵀ + Σt z[b,t]·(x·τtᵀ): N + 1 products per layer and no per-sample weights; cheaper only
    /// when each sample has a single token (the projection of a pooled vector).
    /// </summary>
    Branch,
}
