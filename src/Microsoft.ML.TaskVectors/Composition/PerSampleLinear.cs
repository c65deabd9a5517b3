using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Composition;

/// <summary>
/// y_b = x_b·W_bᵀ with W_b = Σr mixing[b,r]·stack[r] formed one tile of output rows at a time, as a
/// custom autograd function: backward forms each tile again instead of saving B copies of the weights
/// (SPEC section 4), giving ∂L/∂mixing[b,r] = ⟨G_b, stack[r]⟩ with G_b = gy_bᵀ·x_b per tile.
/// </summary>
internal sealed class PerSampleLinear : autograd.SingleTensorFunction<PerSampleLinear>
{
    /// <summary>The layer's geometry, tile height and frozen [R + 1, out·in] stack (kept as data, not saved for autograd).</summary>
    public sealed record Plan(long OutFeatures, long InFeatures, long TileRows, Tensor Stack);

    public override string Name => nameof(PerSampleLinear);

    /// <summary>x [B, T, in], mixing [B, R + 1] → y [B, T, out].</summary>
    public static Tensor Apply(Tensor x, Tensor mixing, Plan plan) => apply(x, mixing, plan);

    private static Tensor Tile(Tensor mixing, Plan plan, long row, long rows) =>
        mixing.mm(plan.Stack.narrow(1, row * plan.InFeatures, rows * plan.InFeatures)).view(mixing.shape[0], rows, plan.InFeatures);

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (x, mixing, plan) = ((Tensor)vars[0], (Tensor)vars[1], (Plan)vars[2]);
        ctx.save_for_backward([x, mixing]);
        ctx.save_data("plan", plan);
        var y = empty(x.shape[0], x.shape[1], plan.OutFeatures, dtype: x.dtype, device: x.device);
        for (long row = 0; row < plan.OutFeatures; row += plan.TileRows)
        {
            using var scope = NewDisposeScope();
            long rows = Math.Min(plan.TileRows, plan.OutFeatures - row);
            var w = Tile(mixing, plan, row, rows);
            y.narrow(2, row, rows).copy_(x.bmm(w.transpose(1, 2)));
        }
        return y;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var saved = ctx.get_saved_variables();
        var (x, mixing) = (saved[0], saved[1]);
        var plan = (Plan)ctx.get_data("plan");
        var gradX = zeros_like(x);
        var gradMixing = zeros_like(mixing);
        for (long row = 0; row < plan.OutFeatures; row += plan.TileRows)
        {
            using var scope = NewDisposeScope();
            long rows = Math.Min(plan.TileRows, plan.OutFeatures - row);
            var gy = gradOutput.narrow(2, row, rows);
            gradX.add_(gy.bmm(Tile(mixing, plan, row, rows)));
            var g = gy.transpose(1, 2).bmm(x).view(x.shape[0], rows * plan.InFeatures);
            gradMixing.addmm_(g, plan.Stack.narrow(1, row * plan.InFeatures, rows * plan.InFeatures).t());
        }
        return [gradX.DetachFromDisposeScope(), gradMixing.DetachFromDisposeScope(), null!];
    }
}
