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
/// The decompositions run on <see cref="Device"/> (a CUDA device takes them off the CPU, where they are
/// compute-bound: about a minute for 8 task vectors of ViT-B/32 on 2 cores); τt is read on the CPU and
/// the merged tensor is returned there.
/// When ⌊r/N⌋ is 0 (more tasks than the tensor's rank, e.g. a 2×k weight with three tasks) no
/// triplet can be kept per task, so that tensor falls back to the average (1/N)·Σt τt, scaled by α.
/// </remarks>
public sealed class TsvMerging : MergeMethod
{
    /// <summary>Creates the method.</summary>
    /// <param name="alpha">Scaling coefficient α, finite and ≥ 0.</param>
    /// <param name="device">Where the decompositions run (null: the CPU); see <see cref="Runtime.ComputeDevice.Resolve"/>.</param>
    public TsvMerging(double alpha = 1.0, torch.Device? device = null)
    {
        RequireNonNegativeFinite(alpha, nameof(alpha));
        Alpha = alpha;
        Device = device ?? torch.CPU;
    }

    /// <summary>Scaling coefficient α.</summary>
    public double Alpha { get; }

    /// <summary>Where the decompositions run.</summary>
    public torch.Device Device { get; }

    /// <inheritdoc />
    public override string Name => "tsv";

    /// <inheritdoc />
    /// <remarks>
    /// Each τt's top ⌊r/N⌋ singular triplets come from the eigendecomposition of its r×r Gram matrix
    /// (τᵀτ or ττᵀ, the smaller one) in float64: the eigenvectors are one side's singular vectors, the
    /// square roots of the eigenvalues the singular values, and the other side is τ·v/σ. The polar
    /// factors are likewise M·(MᵀM)^(−1/2) from the eigendecomposition of MᵀM, and the result is
    /// U·[(UᵀU)^(−1/2)·diag(α·S)·(VᵀV)^(−1/2)]·Vᵀ. This is the same matrix as the SVD formulation,
    /// computed in float64 throughout: within about 10⁻⁷ (relative) of float64 SVDs, where float32
    /// SVDs are 10⁻⁵–10⁻⁴ off, and about twice as fast — a symmetric eigendecomposition costs less
    /// than an SVD, and the N decompositions run side by side on the cores (LAPACK barely uses more
    /// than one). τt is read when its decomposition starts, so only a few are in memory at once.
    /// Where the Gram route would lose accuracy — a kept singular value below 10⁻⁶ of its task's
    /// largest (a zero or low-rank τt), or stacked singular vectors that are nearly dependent
    /// (condition number above 10⁶, e.g. two identical tasks) — the tensor is merged with float32
    /// SVDs as the summary describes; when every τt is zero the result is zero.
    /// </remarks>
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
            return taskVectors.Sum(tensorName).div_(n).mul_(Alpha).MoveToOuterDisposeScope(); // cheap: on the CPU
        }

        // τt is read when its decomposition starts (reads serialised: the set need not be thread-safe),
        // so only the tensors being worked on are in memory.
        var gate = new object();
        torch.Tensor Read(int t)
        {
            lock (gate)
            {
                return FloatKernels.AsContiguousFloat32(taskVectors.Get(t, tensorName)).to(Device);
            }
        }

        var merged = MergeByEigen(Read, n, shape[0], shape[1], perTask, Alpha, Device) ?? MergeBySvd(Read, n, perTask).mul_(Alpha);
        return merged.cpu().contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>Smallest kept eigenvalue of a task's Gram matrix, relative to its largest, for the eigen route (σk/σ1 ≥ 10⁻⁶).</summary>
    internal const double MinKeptEigenvalueRatio = 1e-12;

    /// <summary>Smallest eigenvalue of MᵀM relative to its largest for the eigen route's polar factor (condition number ≤ 10⁶).</summary>
    internal const double MinPolarEigenvalueRatio = 1e-12;

    /// <summary>Rows (or columns) of a task tensor converted to float64 at a time, to bound the temporary memory.</summary>
    private const long ChunkLines = 256;

    /// <summary>
    /// The merge through float64 symmetric eigendecompositions (α applied), or null when the inputs are
    /// too close to degenerate for it (see <see cref="MergeTensor"/>); zeros when every τt is 0.
    /// </summary>
    /// <param name="read">Returns τt (float32, contiguous, rows × cols, on <paramref name="device"/>) in the caller's dispose scope; called once per task, possibly from several threads.</param>
    /// <param name="n">Number of tasks N.</param>
    /// <param name="rows">Rows of each τt.</param>
    /// <param name="cols">Columns of each τt.</param>
    /// <param name="perTask">Singular triplets kept per task, ⌊min(rows, cols)/N⌋ ≥ 1.</param>
    /// <param name="alpha">Scaling coefficient α.</param>
    /// <param name="device">Where the work and the result are (null: the CPU).</param>
    internal static torch.Tensor? MergeByEigen(Func<int, torch.Tensor> read, int n, long rows, long cols, long perTask, double alpha, torch.Device? device = null)
    {
        using var scope = torch.NewDisposeScope();
        bool tall = rows >= cols;
        long r = Math.Min(rows, cols), k = perTask, width = n * k, lines = Math.Max(rows, cols);
        device ??= torch.CPU;
        torch.Tensor Float64(params long[] shape) => torch.empty(shape, torch.ScalarType.Float64, device);
        var u = Float64(rows, width);
        var v = Float64(cols, width);
        var s = Float64(width);
        var largest = new double[n];
        var smallestKept = new double[n];
        ForEach(device, n, t =>
        {
            using var taskScope = torch.NewDisposeScope();
            // Lines of τ along its longer side, as float64: rows of a tall τ, columns of a wide one (as rows of τᵀ).
            var tau = read(t);
            var lineMatrix = tall ? tau : tau.t();                                    // lines × r
            torch.Tensor Lines(long start, long count) => lineMatrix.narrow(0, start, count).to(torch.ScalarType.Float64);

            var gram = torch.zeros(new[] { r, r }, torch.ScalarType.Float64, device);
            for (long start = 0; start < lines; start += ChunkLines)
            {
                using var chunkScope = torch.NewDisposeScope();
                AddLowerGram(gram, Lines(start, Math.Min(ChunkLines, lines - start))); // Σ linesᵀ·lines = r × r Gram
            }

            var (values, vectors) = torch.linalg.eigh(gram);                          // ascending; reads the lower triangle
            largest[t] = values[r - 1].item<double>();
            smallestKept[t] = values[r - k].item<double>();
            if (!(smallestKept[t] > largest[t] * MinKeptEigenvalueRatio))
            {
                return; // degenerate (or all zero): decided below
            }

            var top = vectors.narrow(1, r - k, k).flip(1);                             // r × k, largest first
            var sigma = values.narrow(0, r - k, k).flip(0).sqrt();
            var shortSide = (tall ? v : u).narrow(1, t * k, k);
            var longSide = (tall ? u : v).narrow(1, t * k, k);
            shortSide.copy_(top);
            s.narrow(0, t * k, k).copy_(sigma);
            var inverseSigma = sigma.reciprocal().unsqueeze(0);
            for (long start = 0; start < lines; start += ChunkLines)
            {
                using var chunkScope = torch.NewDisposeScope();
                long count = Math.Min(ChunkLines, lines - start);
                longSide.narrow(0, start, count).copy_(Lines(start, count).matmul(top).mul_(inverseSigma)); // τ·v/σ
            }
        });

        if (largest.All(l => l == 0))
        {
            return torch.zeros(new[] { rows, cols }, torch.ScalarType.Float32, device).MoveToOuterDisposeScope();
        }

        if (Enumerable.Range(0, n).Any(t => !(smallestKept[t] > largest[t] * MinKeptEigenvalueRatio)))
        {
            return null;
        }

        // Polar factors M·(MᵀM)^(−1/2) of the stacked U and V.
        var inverseRoots = new[] { Float64(width, width), Float64(width, width) };
        var wellConditioned = new bool[2];
        ForEach(device, 2, side =>
        {
            using var sideScope = torch.NewDisposeScope();
            var m = side == 0 ? u : v;
            var gram = torch.zeros(new[] { width, width }, torch.ScalarType.Float64, device);
            AddLowerGram(gram, m);
            var (values, vectors) = torch.linalg.eigh(gram);
            double smallest = values[0].item<double>(), biggest = values[width - 1].item<double>();
            wellConditioned[side] = smallest > biggest * MinPolarEigenvalueRatio;
            if (wellConditioned[side])
            {
                inverseRoots[side].copy_(vectors.mul(values.rsqrt().unsqueeze(0)).matmul(vectors.t()));
            }
        });

        if (!wellConditioned[0] || !wellConditioned[1])
        {
            return null;
        }

        // merged = U·core·Vᵀ with core = (UᵀU)^(−1/2)·diag(α·S)·(VᵀV)^(−1/2), a row block at a time.
        var core = inverseRoots[0].mul(s.mul(alpha).unsqueeze(0)).matmul(inverseRoots[1]);     // width × width
        var right = core.matmul(v.t());                                                        // width × cols
        var merged = torch.empty(new[] { rows, cols }, torch.ScalarType.Float32, device);
        for (long start = 0; start < rows; start += ChunkLines)
        {
            using var chunkScope = torch.NewDisposeScope();
            long count = Math.Min(ChunkLines, rows - start);
            merged.narrow(0, start, count).copy_(u.narrow(0, start, count).matmul(right));
        }

        return merged.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Runs the independent decompositions side by side on the CPU's cores (<see cref="ParallelTorch"/>), one
    /// after another on a CUDA device, which parallelises each itself.
    /// </summary>
    private static void ForEach(torch.Device device, int count, Action<int> body)
    {
        if (device.type == DeviceType.CPU)
        {
            ParallelTorch.For(count, body);
            return;
        }

        for (int i = 0; i < count; i++)
        {
            body(i);
        }
    }

    /// <summary>Column blocks the Gram matrix is computed in: only the blocks on and below the diagonal are formed.</summary>
    private const int GramBlocks = 4;

    /// <summary>
    /// Adds mᵀ·m to the lower triangle (block-wise: the blocks on and below the diagonal) of the
    /// square <paramref name="gram"/>, which is all the symmetric eigendecomposition reads; saves
    /// about a third of the multiplications of the full product.
    /// </summary>
    private static void AddLowerGram(torch.Tensor gram, torch.Tensor m)
    {
        using var scope = torch.NewDisposeScope();
        long width = m.shape[1];
        int blocks = (int)Math.Clamp(width / 128, 1, GramBlocks);
        long step = (width + blocks - 1) / blocks;
        for (long i = 0; i < width; i += step)
        {
            long rowsOfBlock = Math.Min(step, width - i);
            var left = m.narrow(1, i, rowsOfBlock).t();
            // Row block i of the Gram, columns 0 … i + its width: one product per row block.
            gram.narrow(0, i, rowsOfBlock).narrow(1, 0, i + rowsOfBlock).addmm_(left, m.narrow(1, 0, i + rowsOfBlock));
        }
    }

    /// <summary>The merge through float32 SVDs (α not applied), on the device <paramref name="read"/> puts τt on.</summary>
    internal static torch.Tensor MergeBySvd(Func<int, torch.Tensor> read, int n, long perTask)
    {
        using var scope = torch.NewDisposeScope();
        var us = new List<torch.Tensor>(n);
        var ss = new List<torch.Tensor>(n);
        var vhs = new List<torch.Tensor>(n);
        for (int t = 0; t < n; t++)
        {
            using var taskScope = torch.NewDisposeScope();
            var (u, s, vh) = torch.linalg.svd(read(t), fullMatrices: false);
            us.Add(u.narrow(1, 0, perTask).contiguous().MoveToOuterDisposeScope());
            ss.Add(s.narrow(0, 0, perTask).contiguous().MoveToOuterDisposeScope());
            vhs.Add(vh.narrow(0, 0, perTask).contiguous().MoveToOuterDisposeScope());
        }

        var uOrth = Orthogonalize(torch.cat(us, 1));           // rows × N·k
        var vOrth = Orthogonalize(torch.cat(vhs, 0).t());      // cols × N·k
        var sAll = torch.cat(ss, 0);                            // N·k
        return uOrth.mul(sAll.unsqueeze(0)).matmul(vOrth.t()).MoveToOuterDisposeScope();
    }

    /// <summary>The orthogonal polar factor P·Qᵀ of M = P·Σ·Qᵀ (closest matrix with orthonormal columns).</summary>
    private static torch.Tensor Orthogonalize(torch.Tensor m)
    {
        var (p, _, qh) = torch.linalg.svd(m, fullMatrices: false);
        return p.matmul(qh);
    }
}
