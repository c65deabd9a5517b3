using Microsoft.ML.TaskVectors.Merging;
using TorchSharp;
using static Microsoft.ML.TaskVectors.Tests.Merging.MergeTestData;

namespace Microsoft.ML.TaskVectors.Tests.Merging;

public class TiesMergingTests
{
    // k = 0.4 of d = 5 entries → keep count floor(2.0) = 2 per task.
    // τ1 = [ 4, −1,  0.5,  3,  −2 ]  |.| top-2: 4, 3 (threshold 3) → kept [ 4, 0,  0, 3, 0]
    // τ2 = [−5,  2,  1,  −0.5,  1 ]  |.| top-2: 5, 2 (threshold 2) → kept [−5, 2,  0, 0, 0]
    // τ3 = [ 1,  3, −4,  −1,  0.5 ]  |.| top-2: 4, 3 (threshold 3) → kept [ 0, 3, −4, 0, 0]
    // Σ kept = [−1, 5, −4, 3, 0] → elected signs [−, +, −, +, majority]
    private static Microsoft.ML.TaskVectors.TaskVectors.InMemoryTaskVectorSet ThreeTasks() =>
        OneTensor("w", [4f, -1f, 0.5f, 3f, -2f], [-5f, 2f, 1f, -0.5f, 1f], [1f, 3f, -4f, -1f, 0.5f]);

    [Test]
    public void DisjointMean_AveragesOnlyKeptValuesAgreeingWithElectedSign()
    {
        using var set = ThreeTasks();
        // entry 0: agreeing with −: {−5} → −5 (the kept +4 disagrees)
        // entry 1: agreeing with +: {2, 3} → 2.5
        // entry 2: {−4} → −4;  entry 3: {3} → 3;  entry 4: nothing kept → 0
        var merged = Merge(new TiesMerging(k: 0.4, ranking: TiesRanking.PerTensor), set, "w");
        Assert.That(merged, Is.EqualTo(new[] { -5f, 2.5f, -4f, 3f, 0f }).Within(1e-6));
    }

    [Test]
    public void DisjointSum_SumsAgreeingKeptValues()
    {
        using var set = ThreeTasks();
        // entry 1: 2 + 3 = 5; the rest as for the mean (one agreeing value each)
        var merged = Merge(new TiesMerging(k: 0.4, ranking: TiesRanking.PerTensor, aggregation: TiesAggregation.DisjointSum), set, "w");
        Assert.That(merged, Is.EqualTo(new[] { -5f, 5f, -4f, 3f, 0f }).Within(1e-6));
    }

    [Test]
    public void Lambda_ScalesTheResult()
    {
        using var set = ThreeTasks();
        // 0.5·[−5, 2.5, −4, 3, 0]
        var merged = Merge(new TiesMerging(k: 0.4, lambda: 0.5, ranking: TiesRanking.PerTensor), set, "w");
        Assert.That(merged, Is.EqualTo(new[] { -2.5f, 1.25f, -2f, 1.5f, 0f }).Within(1e-6));
    }

    // Two tensors a, b (4 entries each), two tasks, k = 0.5.
    // task 1: a = [10, 9, 8, 7],     b = [1, −2, 0.5, 3]
    // task 2: a = [−1, 0.5, 2, 0.25], b = [6, 5, −4, 0.1]
    private static Microsoft.ML.TaskVectors.TaskVectors.InMemoryTaskVectorSet TwoTensors() => MakeSet(
        new() { ["a"] = torch.tensor(new[] { 10f, 9f, 8f, 7f }), ["b"] = torch.tensor(new[] { 1f, -2f, 0.5f, 3f }) },
        new() { ["a"] = torch.tensor(new[] { -1f, 0.5f, 2f, 0.25f }), ["b"] = torch.tensor(new[] { 6f, 5f, -4f, 0.1f }) });

    [Test]
    public void GlobalRanking_RanksOverTheWholeTaskVector()
    {
        using var set = TwoTensors();
        var ties = new TiesMerging(k: 0.5);
        ties.Prepare(set);
        // d = 8, keep 4 per task.
        // task 1 magnitudes {10, 9, 8, 7, 1, 2, 0.5, 3} → top-4 threshold 7: keeps all of a, nothing of b
        // task 2 magnitudes {1, 0.5, 2, 0.25, 6, 5, 4, 0.1} → top-4 threshold 2: keeps a[2]=2, b[0..2]=6, 5, −4
        Assert.That(ties.GetGlobalThreshold(0), Is.EqualTo(7f));
        Assert.That(ties.GetGlobalThreshold(1), Is.EqualTo(2f));
        using var a = ties.MergeTensor("a", set);
        using var b = ties.MergeTensor("b", set);
        // a: kept [10, 9, 8, 7] and [0, 0, 2, 0] → all +; means [10, 9, (8+2)/2 = 5, 7]
        Assert.That(Values(a), Is.EqualTo(new[] { 10f, 9f, 5f, 7f }).Within(1e-6));
        // b: kept [0, 0, 0, 0] and [6, 5, −4, 0] → [6, 5, −4, 0]
        Assert.That(Values(b), Is.EqualTo(new[] { 6f, 5f, -4f, 0f }).Within(1e-6));
    }

    [Test]
    public void PerTensorRanking_RanksWithinEachTensor()
    {
        using var set = TwoTensors();
        var ties = new TiesMerging(k: 0.5, ranking: TiesRanking.PerTensor);
        // keep 2 of 4 per tensor and task.
        // a: task 1 keeps [10, 9, 0, 0]; task 2 (|.| 1, 0.5, 2, 0.25) keeps [−1, 0, 2, 0]
        //    Σ = [9, 9, 2, 0] → entry 0: + agrees {10} → 10; entry 1: 9; entry 2: 2; entry 3: 0
        Assert.That(Merge(ties, set, "a"), Is.EqualTo(new[] { 10f, 9f, 2f, 0f }).Within(1e-6));
        // b: task 1 (|.| 1, 2, 0.5, 3) keeps [0, −2, 0, 3]; task 2 keeps [6, 5, 0, 0]
        //    Σ = [6, 3, 0, 3] → entry 0: 6; entry 1: + agrees {5} → 5; entry 2: nothing kept → 0; entry 3: 3
        Assert.That(Merge(ties, set, "b"), Is.EqualTo(new[] { 6f, 5f, 0f, 3f }).Within(1e-6));
    }

    [Test]
    public void SignTie_TakesTheTensorsMajoritySign()
    {
        // k = 1 keeps everything. Entry 0 has kept values +2 and −2 (sum exactly 0).
        // Positive majority: Σ = [0, 4, 2] → elected [?, +, +], majority sign(+1 +1) = + → entry 0: mean{2} = 2
        using (var positive = OneTensor("w", [2f, 3f, 1f], [-2f, 1f, 1f]))
        {
            Assert.That(Merge(new TiesMerging(k: 1.0, ranking: TiesRanking.PerTensor), positive, "w"),
                Is.EqualTo(new[] { 2f, 2f, 1f }).Within(1e-6));
        }

        // Negative majority: Σ = [0, −4, −2] → majority − → entry 0: mean{−2} = −2; entry 1: (−3−1)/2 = −2; entry 2: −1
        using (var negative = OneTensor("w", [2f, -3f, -1f], [-2f, -1f, -1f]))
        {
            Assert.That(Merge(new TiesMerging(k: 1.0, ranking: TiesRanking.PerTensor), negative, "w"),
                Is.EqualTo(new[] { -2f, -2f, -1f }).Within(1e-6));
        }
    }

    [Test]
    public void SignTie_WithBalancedMajority_DefaultsToPlus()
    {
        // Σ = [0, 2, −2] → elected signs sum to +1 − 1 = 0 → majority + → entry 0: mean{3} = 3
        using var set = OneTensor("w", [3f, 1f, -1f], [-3f, 1f, -1f]);
        Assert.That(Merge(new TiesMerging(k: 1.0, ranking: TiesRanking.PerTensor), set, "w"),
            Is.EqualTo(new[] { 3f, 1f, -1f }).Within(1e-6));
    }

    [Test]
    public void AllZeroEntry_MergesToZero()
    {
        // entry 1 is 0 in every task: elected sign = majority (+) but no nonzero kept value agrees → 0
        using var set = OneTensor("w", [1f, 0f, 2f], [3f, 0f, 2f]);
        Assert.That(Merge(new TiesMerging(k: 1.0, ranking: TiesRanking.PerTensor), set, "w"),
            Is.EqualTo(new[] { 2f, 0f, 2f }).Within(1e-6));
        Assert.That(Merge(new TiesMerging(k: 1.0, ranking: TiesRanking.PerTensor, aggregation: TiesAggregation.DisjointSum), set, "w"),
            Is.EqualTo(new[] { 4f, 0f, 4f }).Within(1e-6));
    }

    [Test]
    public void TiesAtTheThreshold_AreAllKept()
    {
        // k = 0.25 of 4 → keep count 1 → threshold = 3; all three entries with |x| = 3 are kept
        using var set = OneTensor("w", [3f, -3f, 3f, 1f]);
        Assert.That(Merge(new TiesMerging(k: 0.25, ranking: TiesRanking.PerTensor), set, "w"),
            Is.EqualTo(new[] { 3f, -3f, 3f, 0f }).Within(1e-6));
    }

    [Test]
    public void KeepCountZero_KeepsNothing()
    {
        // k = 0.2 of 4 → floor(0.8) = 0 → nothing kept → all zeros, for both rankings
        using var set = OneTensor("w", [5f, -1f, 2f, 1f], [1f, 1f, 1f, 1f]);
        Assert.That(Merge(new TiesMerging(k: 0.2, ranking: TiesRanking.PerTensor), set, "w"), Is.EqualTo(new[] { 0f, 0f, 0f, 0f }));
        var global = new TiesMerging(k: 0.2);
        Assert.That(Merge(global, set, "w"), Is.EqualTo(new[] { 0f, 0f, 0f, 0f }));
        Assert.That(global.GetGlobalThreshold(0), Is.Null);
    }

    [Test]
    public void KeepCount_UsesDecimalFloor()
    {
        // 0.29·100 is 28.999999999999996 in binary floating point; floor(k·d) must be 29.
        Assert.That(MagnitudeThreshold.KeepCount(0.29, 100), Is.EqualTo(29));
        Assert.That(MagnitudeThreshold.KeepCount(0.2, 4), Is.EqualTo(0));
        Assert.That(MagnitudeThreshold.KeepCount(0.2, 10), Is.EqualTo(2));
        Assert.That(MagnitudeThreshold.KeepCount(1.0, 7), Is.EqualTo(7));
    }

    [Test]
    public void GlobalMergeBeforePrepare_Throws()
    {
        using var set = ThreeTasks();
        var ex = Assert.Throws<InvalidOperationException>(() => new TiesMerging().MergeTensor("w", set));
        Assert.That(ex!.Message, Does.Contain("Prepare must be called"));
    }

    [Test]
    public void GlobalMergeWithAnotherSet_Throws()
    {
        using var set = ThreeTasks();
        using var other = ThreeTasks();
        var ties = new TiesMerging();
        ties.Prepare(set);
        Assert.Throws<InvalidOperationException>(() => ties.MergeTensor("w", other));
    }

    [Test]
    public void Prepare_ReportsMonotonicProgressToOne_AndHonoursCancellation()
    {
        using var set = TwoTensors();
        var reports = new List<double>();
        new TiesMerging().Prepare(set, new SyncProgress(reports.Add));
        Assert.That(reports, Is.Not.Empty);
        Assert.That(reports, Is.Ordered);
        Assert.That(reports[^1], Is.EqualTo(1.0));
        // 0, then one report per tensor and pass: 2 passes (too small to sample) × 2 tensors
        Assert.That(reports.Distinct().Count(), Is.EqualTo(5));

        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var ties = new TiesMerging();
        Assert.Throws<OperationCanceledException>(() => ties.Prepare(set, null, cts.Token));
        Assert.Throws<InvalidOperationException>(() => ties.MergeTensor("a", set));
    }

    /// <summary>Progress that reports synchronously (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class SyncProgress(Action<double> report) : IProgress<double>
    {
        public void Report(double value) => report(value);
    }
}
