using Microsoft.ML.TaskVectors.TaskVectors;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// TSV-M (task singular vectors, merge). For each 2-D tensor: SVD each τt, keep its top ⌊r/N⌋
/// singular triplets (r = min(rows, cols)), concatenate the kept U columns, singular values and V
/// columns of all tasks, orthogonalise the stacked U and the stacked V each via its own SVD
/// (U = PΣQᵀ → PQᵀ), and rebuild U_orth·diag(S)·V_orthᵀ. Tensors that are not 2-D are averaged.
/// The result is scaled by α.
/// </summary>
/// <remarks>
/// When ⌊r/N⌋ is 0 (more tasks than the tensor's rank, e.g. a 2×k weight with three tasks) no
/// triplet can be kept per task, so that tensor falls back to the average (1/N)·Σt τt, scaled by α.
/// </remarks>
public sealed class TsvMerging : MergeMethod
{
    /// <summary>Creates the method.</summary>
    /// <param name="alpha">Scaling coefficient α, finite and ≥ 0.</param>
    public TsvMerging(double alpha = 1.0)
    {
        RequireNonNegativeFinite(alpha, nameof(alpha));
        Alpha = alpha;
    }

    /// <summary>Scaling coefficient α.</summary>
    public double Alpha { get; }

    /// <inheritdoc />
    public override string Name => "tsv";

    /// <inheritdoc />
    public override torch.Tensor MergeTensor(string tensorName, ITaskVectorSet taskVectors)
    {
        ValidateArguments(tensorName, taskVectors);
        using var scope = torch.NewDisposeScope();
        var shape = taskVectors.GetShape(tensorName);
        int n = taskVectors.Count;
        long rank = shape.Length == 2 ? Math.Min(shape[0], shape[1]) : 0;
        long perTask = rank / n;
        if (perTask == 0)
        {
            return taskVectors.Sum(tensorName).div_(n).mul_(Alpha).MoveToOuterDisposeScope();
        }

        var us = new List<torch.Tensor>(n);
        var ss = new List<torch.Tensor>(n);
        var vhs = new List<torch.Tensor>(n);
        for (int t = 0; t < n; t++)
        {
            using var taskScope = torch.NewDisposeScope();
            var tau = taskVectors.Get(t, tensorName).to(torch.ScalarType.Float32);
            var (u, s, vh) = torch.linalg.svd(tau, fullMatrices: false);
            us.Add(u.narrow(1, 0, perTask).contiguous().MoveToOuterDisposeScope());
            ss.Add(s.narrow(0, 0, perTask).contiguous().MoveToOuterDisposeScope());
            vhs.Add(vh.narrow(0, 0, perTask).contiguous().MoveToOuterDisposeScope());
        }

        var uOrth = Orthogonalize(torch.cat(us, 1));           // rows × N·k
        var vOrth = Orthogonalize(torch.cat(vhs, 0).t());      // cols × N·k
        var sAll = torch.cat(ss, 0);                            // N·k
        var merged = uOrth.mul(sAll.unsqueeze(0)).matmul(vOrth.t());
        return merged.mul_(Alpha).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>The orthogonal polar factor P·Qᵀ of M = P·Σ·Qᵀ (closest matrix with orthonormal columns).</summary>
    private static torch.Tensor Orthogonalize(torch.Tensor m)
    {
        var (p, _, qh) = torch.linalg.svd(m, fullMatrices: false);
        return p.matmul(qh);
    }
}
