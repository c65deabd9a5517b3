using Microsoft.ML.TaskVectors.Merging;
using TorchSharp;
using static Microsoft.ML.TaskVectors.Tests.Merging.MergeTestData;

namespace Microsoft.ML.TaskVectors.Tests.Merging;

public class TsvMergingTests
{
    [Test]
    public void OrthogonalTopSingularDirections_AreKept_AndTheRestDropped()
    {
        // N = 2, r = 2 → keep ⌊2/2⌋ = 1 triplet per task.
        // τ1 = diag(3, 1): top triplet σ=3, u = v = e1;  τ2 = diag(0, 2): σ=2, u = v = e2.
        // stacked U = V = [e1 e2] = I (already orthogonal) → result diag(3, 2); τ1's σ=1 is dropped.
        using var set = MakeSet(
            new() { ["m"] = Matrix(2, 2, 3, 0, 0, 1) },
            new() { ["m"] = Matrix(2, 2, 0, 0, 0, 2) });
        Assert.That(Merge(new TsvMerging(), set, "m"), Is.EqualTo(new[] { 3f, 0f, 0f, 2f }).Within(1e-5));
    }

    [Test]
    public void NonOrthogonalDirections_AreOrthogonalisedByThePolarFactor()
    {
        // τ1 = 3·e1e1ᵀ = [[3, 0], [0, 0]];  τ2 = 2·uuᵀ with u = (1, 1)/√2 → [[1, 1], [1, 1]].
        // Stacked U = stacked V = M = [e1 u] = [[1, a], [0, a]], a = 1/√2 ≈ 0.7071068.
        // Polar factor of a 2×2 matrix [[p, q], [r, s]] with det > 0: [[p+s, q−r], [r−q, p+s]] / √((p+s)² + (q−r)²)
        //   = [[1.7071068, 0.7071068], [−0.7071068, 1.7071068]] / 1.8477591 = [[c, s], [−s, c]],
        //   c = 0.9238795 (cos 22.5°), s = 0.3826834 (sin 22.5°): columns w1 = (c, −s), w2 = (s, c).
        // Result = 3·w1w1ᵀ + 2·w2w2ᵀ
        //   = [[3c² + 2s², −3cs + 2cs], [−3cs + 2cs, 3s² + 2c²]]
        //   = [[3·0.8535534 + 2·0.1464466, −0.3535534], [−0.3535534, 3·0.1464466 + 2·0.8535534]]
        //   = [[2.8535534, −0.3535534], [−0.3535534, 2.1464466]]
        using var set = MakeSet(
            new() { ["m"] = Matrix(2, 2, 3, 0, 0, 0), ["bias"] = torch.tensor(new[] { 1f, 2f }) },
            new() { ["m"] = Matrix(2, 2, 1, 1, 1, 1), ["bias"] = torch.tensor(new[] { 3f, -2f }) });
        Assert.That(Merge(new TsvMerging(), set, "m"),
            Is.EqualTo(new[] { 2.8535534f, -0.3535534f, -0.3535534f, 2.1464466f }).Within(1e-5));
        // α = 0.5 halves it
        Assert.That(Merge(new TsvMerging(0.5), set, "m"),
            Is.EqualTo(new[] { 1.4267767f, -0.1767767f, -0.1767767f, 1.0732233f }).Within(1e-5));
        // 1-D bias is averaged: ([1, 2] + [3, −2]) / 2 = [2, 0]; with α = 0.5 → [1, 0]
        Assert.That(Merge(new TsvMerging(), set, "bias"), Is.EqualTo(new[] { 2f, 0f }).Within(1e-6));
        Assert.That(Merge(new TsvMerging(0.5), set, "bias"), Is.EqualTo(new[] { 1f, 0f }).Within(1e-6));
    }

    [TestCase(8, 6, 2)]   // r = 6, ⌊6/2⌋ = 3 triplets per task, 6 directions used
    [TestCase(9, 7, 3)]   // r = 7, ⌊7/3⌋ = 2 triplets per task, 6 directions used
    [TestCase(5, 12, 2)]  // wide: r = 5, ⌊5/2⌋ = 2 per task, 4 directions used
    public void TaskVectorsOnDisjointOrthonormalSubspaces_AreRecoveredExactly(int rows, int cols, int tasks)
    {
        int perTask = Math.Min(rows, cols) / tasks;
        var rng = new Random(rows * 100 + cols);
        using var scope = torch.NewDisposeScope();
        var (qU, _) = torch.linalg.qr(torch.tensor(Enumerable.Range(0, rows * rows).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray(), new long[] { rows, rows }));
        var (qV, _) = torch.linalg.qr(torch.tensor(Enumerable.Range(0, cols * cols).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray(), new long[] { cols, cols }));
        var taskTensors = new List<Dictionary<string, torch.Tensor>>();
        var sum = torch.zeros(rows, cols);
        for (int t = 0; t < tasks; t++)
        {
            // τt = Σ_j σ_j u_j v_jᵀ over its own orthonormal columns, σ in [1, 4)
            var u = qU.narrow(1, t * perTask, perTask);
            var v = qV.narrow(1, t * perTask, perTask);
            var sigma = torch.tensor(Enumerable.Range(0, perTask).Select(_ => 1f + 3f * (float)rng.NextDouble()).ToArray());
            var tau = u.mul(sigma.unsqueeze(0)).matmul(v.t());
            sum.add_(tau);
            taskTensors.Add(new() { ["m"] = tau.clone().DetachFromDisposeScope() });
        }

        using var set = MakeSet(taskTensors.ToArray());
        var merged = Merge(new TsvMerging(), set, "m");
        Assert.That(merged, Is.EqualTo(Values(sum)).Within(1e-4));
        // Sanity: the merge is not an average (which would be Σ/N).
        Assert.That(Math.Abs(merged.Zip(Values(sum)).Max(x => Math.Abs(x.First - x.Second / tasks))), Is.GreaterThan(1e-2));
    }

    [Test]
    public void NonMatrixTensors_AreAveraged()
    {
        // 3-D [1, 2, 2]: ([1, 2, 3, 4] + [3, 0, −1, 2] + [2, 1, 1, 0]) / 3 = [6, 3, 3, 6] / 3 = [2, 1, 1, 2]
        using var set = MakeSet(
            new() { ["c"] = torch.tensor(new[] { 1f, 2f, 3f, 4f }, new long[] { 1, 2, 2 }) },
            new() { ["c"] = torch.tensor(new[] { 3f, 0f, -1f, 2f }, new long[] { 1, 2, 2 }) },
            new() { ["c"] = torch.tensor(new[] { 2f, 1f, 1f, 0f }, new long[] { 1, 2, 2 }) });
        Assert.That(Merge(new TsvMerging(), set, "c"), Is.EqualTo(new[] { 2f, 1f, 1f, 2f }).Within(1e-6));
    }

    [Test]
    public void MatrixWithTooLowRankForTheTaskCount_FallsBackToAverage()
    {
        // shape [1, 4]: r = 1, N = 2 → ⌊1/2⌋ = 0 → average ([1, 2, 3, 4] + [3, 2, 1, 0]) / 2 = [2, 2, 2, 2], α = 0.5 → [1, 1, 1, 1]
        using var set = MakeSet(
            new() { ["row"] = Matrix(1, 4, 1, 2, 3, 4) },
            new() { ["row"] = Matrix(1, 4, 3, 2, 1, 0) });
        Assert.That(Merge(new TsvMerging(0.5), set, "row"), Is.EqualTo(new[] { 1f, 1f, 1f, 1f }).Within(1e-6));
    }

    private static torch.Tensor RandomMatrix(Random rng, long rows, long cols, double decay)
    {
        // U·diag(σ)·Vᵀ with σ_i = exp(−i/decay) (decay 0: plain Gaussian entries) plus a little noise.
        using var scope = torch.NewDisposeScope();
        var gaussian = torch.tensor(Enumerable.Range(0, (int)(rows * cols)).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray(), new[] { rows, cols });
        if (decay == 0) return gaussian.MoveToOuterDisposeScope();
        long r = Math.Min(rows, cols);
        var (u, _, vh) = torch.linalg.svd(gaussian, fullMatrices: false);
        var sigma = torch.arange(r, torch.ScalarType.Float32).div_(-decay).exp_();
        return u.mul(sigma.unsqueeze(0)).matmul(vh).add_(gaussian.mul(1e-6f)).MoveToOuterDisposeScope();
    }

    private static double RelativeDifference(torch.Tensor a, torch.Tensor b)
    {
        using var scope = torch.NewDisposeScope();
        var a64 = a.to(torch.ScalarType.Float64);
        var b64 = b.to(torch.ScalarType.Float64);
        return a64.sub(b64).norm().item<double>() / b64.norm().item<double>();
    }

    [TestCase(40, 24, 3, 0.0)]    // tall
    [TestCase(24, 40, 4, 0.0)]    // wide
    [TestCase(32, 32, 4, 0.0)]    // square: the stacked singular vectors fill the whole space
    [TestCase(48, 32, 2, 4.0)]    // steep spectrum: kept σ down to e^−4 of the largest
    [TestCase(64, 64, 8, 30.0)]
    public void EigenRoute_MatchesTheSvdFormulation_ComputedInFloat64(int rows, int cols, int tasks, double decay)
    {
        var rng = new Random(rows * 7 + cols + tasks);
        using var scope = torch.NewDisposeScope();
        var taus = Enumerable.Range(0, tasks).Select(_ => RandomMatrix(rng, rows, cols, decay)).ToArray();
        long perTask = Math.Min(rows, cols) / tasks;
        var eigen = TsvMerging.MergeByEigen(t => taus[t], tasks, rows, cols, perTask, alpha: 1.0);
        Assert.That(eigen, Is.Not.Null, "well-conditioned inputs take the eigen route");
        // Reference: the SVD formulation in float64; the float32 SVDs themselves are ~1e−6 off it.
        var reference = TsvMerging.MergeBySvd(t => taus[t].to(torch.ScalarType.Float64), tasks, perTask);
        var float32 = TsvMerging.MergeBySvd(t => taus[t], tasks, perTask);
        Assert.That(RelativeDifference(eigen!, reference), Is.LessThan(1e-6));
        Assert.That(RelativeDifference(float32, reference), Is.LessThan(1e-4));
        Assert.That(eigen!.dtype, Is.EqualTo(torch.ScalarType.Float32));
        Assert.That(eigen.shape, Is.EqualTo(new long[] { rows, cols }));
    }

    [Test]
    public void DegenerateInputs_FallBackToTheSvds_AndStayFinite()
    {
        var rng = new Random(3);
        using var scope = torch.NewDisposeScope();
        var a = RandomMatrix(rng, 12, 8, 0);
        var b = RandomMatrix(rng, 12, 8, 0);
        var zero = torch.zeros(12, 8);
        foreach (var (label, taus) in new[]
        {
            ("one task is zero", new[] { a, zero }),
            ("identical tasks", new[] { a, a.clone() }),
            ("rank-one task", new[] { a, b.narrow(1, 0, 1).matmul(b.narrow(0, 0, 1)) }),
        })
        {
            Assert.That(TsvMerging.MergeByEigen(t => taus[t], 2, 12, 8, 4, 1.0), Is.Null, label);
            using var set = MakeSet(taus.Select(t => new Dictionary<string, torch.Tensor> { ["m"] = t.clone() }).ToArray());
            var merged = Merge(new TsvMerging(0.5), set, "m");
            Assert.That(merged.All(float.IsFinite), Is.True, label);
            Assert.That(merged, Is.EqualTo(Values(TsvMerging.MergeBySvd(t => taus[t], 2, 4).mul(0.5))).Within(1e-6), label);
        }

        // Every task zero: the merge is exactly zero.
        using var zeros = MakeSet(new() { ["m"] = torch.zeros(12, 8) }, new() { ["m"] = torch.zeros(12, 8) });
        Assert.That(Merge(new TsvMerging(), zeros, "m"), Is.All.EqualTo(0f));
    }
}
