using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Composition;

/// <summary>
/// y_b = x_b·W_bᵀ with W_b = Σr mixing[b,r]·stack[r] formed one tile of output rows at a time, as a
/// custom autograd function: backward forms each tile again instead of saving B copies of the weights
/// (SPEC section 4), giving ∂L/∂mixing[b,r] = ⟨G_b, stack[r]⟩ with G_b = gy_bᵀ·x_b per tile. Tiles span
/// <see cref="Plan.TileRows"/> output rows and <see cref="Plan.BatchChunk"/> samples, so that every
/// temporary stays small (glibc maps blocks over 32 MB afresh on each allocation, paying page faults).
/// On CPUs with AVX2 and FMA the whole layer runs in <see cref="PerSampleKernels"/> instead, which form the
/// weights inside the matrix kernel's cache blocks.
/// </summary>
internal sealed class PerSampleLinear : autograd.SingleTensorFunction<PerSampleLinear>
{
    /// <summary>
    /// The layer's geometry, tile size and frozen [R + 1, out·in] stack (kept as data, not saved for autograd);
    /// <paramref name="Fused"/> runs <see cref="PerSampleKernels"/> (float32 on the CPU) instead of the tiles.
    /// </summary>
    public sealed record Plan(long OutFeatures, long InFeatures, long TileRows, long BatchChunk, Tensor Stack, bool Fused = false);

    public override string Name => nameof(PerSampleLinear);

    /// <summary>x [B, T, in], mixing [B, R + 1] → y [B, T, out].</summary>
    public static Tensor Apply(Tensor x, Tensor mixing, Plan plan) => apply(x, mixing, plan);

    private static Tensor StackRows(Plan plan, long row, long rows) => plan.Stack.narrow(1, row * plan.InFeatures, rows * plan.InFeatures);

    private static Tensor Tile(Tensor mixing, Plan plan, long row, long rows) =>
        mixing.mm(StackRows(plan, row, rows)).view(mixing.shape[0], rows, plan.InFeatures);

    /// <summary>Visits every (output rows, samples) tile.</summary>
    private static void ForEachTile(Plan plan, long batch, Action<long, long, long, long> visit)
    {
        for (long row = 0; row < plan.OutFeatures; row += plan.TileRows)
            for (long b = 0; b < batch; b += plan.BatchChunk)
            {
                using var scope = NewDisposeScope();
                visit(row, Math.Min(plan.TileRows, plan.OutFeatures - row), b, Math.Min(plan.BatchChunk, batch - b));
            }
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (x, mixing, plan) = ((Tensor)vars[0], (Tensor)vars[1], (Plan)vars[2]);
        ctx.save_for_backward([x, mixing]);
        ctx.save_data("plan", plan);
        if (plan.Fused) return PerSampleKernels.Forward(x, mixing, plan.Stack, plan.OutFeatures, plan.InFeatures);
        var y = empty(x.shape[0], x.shape[1], plan.OutFeatures, dtype: x.dtype, device: x.device);
        ForEachTile(plan, x.shape[0], (row, rows, b, n) =>
        {
            var w = Tile(mixing.narrow(0, b, n), plan, row, rows);
            y.narrow(0, b, n).narrow(2, row, rows).copy_(x.narrow(0, b, n).bmm(w.transpose(1, 2)));
        });
        return y;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var saved = ctx.get_saved_variables();
        var (x, mixing) = (saved[0], saved[1]);
        var plan = (Plan)ctx.get_data("plan");
        if (plan.Fused)
        {
            var (gx, gm) = PerSampleKernels.Backward(x, mixing, plan.Stack, gradOutput, plan.OutFeatures, plan.InFeatures);
            return [gx, gm, null!];
        }
        var gradX = zeros_like(x);
        var gradMixing = zeros_like(mixing);
        ForEachTile(plan, x.shape[0], (row, rows, b, n) =>
        {
            var gy = gradOutput.narrow(0, b, n).narrow(2, row, rows);
            var xs = x.narrow(0, b, n);
            gradX.narrow(0, b, n).add_(gy.bmm(Tile(mixing.narrow(0, b, n), plan, row, rows)));
            var g = gy.transpose(1, 2).bmm(xs).view(n, rows * plan.InFeatures);
            gradMixing.narrow(0, b, n).addmm_(g, StackRows(plan, row, rows).t());
        });
        return [gradX.DetachFromDisposeScope(), gradMixing.DetachFromDisposeScope(), null!];
    }
}
