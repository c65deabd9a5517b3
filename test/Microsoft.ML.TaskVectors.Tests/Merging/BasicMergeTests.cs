using Microsoft.ML.TaskVectors.Merging;
using TorchSharp;
using static Microsoft.ML.TaskVectors.Tests.Merging.MergeTestData;

namespace Microsoft.ML.TaskVectors.Tests.Merging;

public class BasicMergeTests
{
    // τ1 = [1, -2, 3], τ2 = [3, 4, -1], τ3 = [2, 1, 1]  →  Σ τ = [6, 3, 3]
    private static Microsoft.ML.TaskVectors.TaskVectors.InMemoryTaskVectorSet ThreeTasks() =>
        OneTensor("w", [1f, -2f, 3f], [3f, 4f, -1f], [2f, 1f, 1f]);

    [Test]
    public void WeightAveraging_IsMeanOfTaskVectors()
    {
        using var set = ThreeTasks();
        // (1/3)·[6, 3, 3] = [2, 1, 1]
        Assert.That(Merge(new WeightAveraging(), set, "w"), Is.EqualTo(new[] { 2f, 1f, 1f }).Within(1e-6));
    }

    [Test]
    public void TaskArithmetic_DefaultLambdaIs0Point3()
    {
        using var set = ThreeTasks();
        // 0.3·[6, 3, 3] = [1.8, 0.9, 0.9]
        Assert.That(Merge(new TaskArithmetic(), set, "w"), Is.EqualTo(new[] { 1.8f, 0.9f, 0.9f }).Within(1e-6));
    }

    [Test]
    public void TaskArithmetic_ScalesSumByLambda()
    {
        using var set = ThreeTasks();
        // 0.75·[6, 3, 3] = [4.5, 2.25, 2.25]
        Assert.That(Merge(new TaskArithmetic(0.75), set, "w"), Is.EqualTo(new[] { 4.5f, 2.25f, 2.25f }).Within(1e-6));
    }

    [Test]
    public void TaskNegation_SubtractsScaledSum()
    {
        using var set = ThreeTasks();
        // −0.5·[6, 3, 3] = [−3, −1.5, −1.5]
        Assert.That(Merge(new TaskNegation(0.5), set, "w"), Is.EqualTo(new[] { -3f, -1.5f, -1.5f }).Within(1e-6));
        // default λ = 1: −[6, 3, 3]
        Assert.That(Merge(new TaskNegation(), set, "w"), Is.EqualTo(new[] { -6f, -3f, -3f }).Within(1e-6));
    }

    [Test]
    public void Merges_KeepMatrixShape_AndLeaveTheSetUnchanged()
    {
        using var set = MakeSet(
            new() { ["m"] = Matrix(2, 2, 1, 2, 3, 4) },
            new() { ["m"] = Matrix(2, 2, 3, 2, 1, 0) });
        // average: [(1+3)/2, (2+2)/2, (3+1)/2, (4+0)/2] = [2, 2, 2, 2]
        Assert.That(Merge(new WeightAveraging(), set, "m"), Is.EqualTo(new[] { 2f, 2f, 2f, 2f }).Within(1e-6));
        using var first = set.Get(0, "m");
        Assert.That(Values(first), Is.EqualTo(new[] { 1f, 2f, 3f, 4f }));
    }

    [Test]
    public void MergeTensor_DoesNotLeakTensorsIntoTheCallersScope()
    {
        using var set = ThreeTasks();
        var method = new TiesMerging(k: 0.5, ranking: TiesRanking.PerTensor);
        using var scope = torch.NewDisposeScope();
        using var merged = method.MergeTensor("w", set);
        // Only the returned tensor may be registered in the caller's scope.
        Assert.That(scope.DisposablesCount, Is.EqualTo(1));
    }
}
