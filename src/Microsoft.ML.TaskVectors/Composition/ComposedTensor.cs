using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Composition;

/// <summary>
/// One composed tensor θ = θ0 + Σr c_r·τ_r stored as a single [R + 1, numel] matrix whose row 0 is θ0,
/// so that a whole set of coefficients (per batch or per sample) becomes one matrix product. Row r
/// belongs to the flat coefficient <see cref="Columns"/>[r − 1] of z viewed as [N·M] (task t, block j at
/// t·M + j); random partitions contribute one row per (task, part), masked to that part.
/// </summary>
internal sealed class ComposedTensor : IDisposable
{
    public ComposedTensor(string name, long[] shape, Tensor stack, Tensor columns)
    {
        Name = name;
        Shape = shape;
        Stack = stack;
        Columns = columns;
    }

    public string Name { get; }

    public long[] Shape { get; }

    public long ElementCount => Stack.shape[1];

    /// <summary>[R + 1, numel]: θ0 then the R task-vector rows.</summary>
    public Tensor Stack { get; }

    /// <summary>int64 [R]: the flat coefficient index of each task-vector row.</summary>
    public Tensor Columns { get; }

    /// <summary>[1 | z gathered] with a leading batch dimension: [B, R + 1] from flat coefficients [B, N·M].</summary>
    public Tensor Mixing(Tensor flatCoefficients) =>
        cat([ones(flatCoefficients.shape[0], 1, dtype: flatCoefficients.dtype, device: flatCoefficients.device),
             flatCoefficients.index_select(1, Columns)], 1);

    public void Dispose()
    {
        Stack.Dispose();
        Columns.Dispose();
    }
}
