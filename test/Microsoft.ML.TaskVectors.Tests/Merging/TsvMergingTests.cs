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
}
