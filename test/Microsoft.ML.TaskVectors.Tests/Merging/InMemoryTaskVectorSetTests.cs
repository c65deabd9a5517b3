using Microsoft.ML.TaskVectors.TaskVectors;
using TorchSharp;
using static Microsoft.ML.TaskVectors.Tests.Merging.MergeTestData;

namespace Microsoft.ML.TaskVectors.Tests.Merging;

public class InMemoryTaskVectorSetTests
{
    [Test]
    public void Get_ReturnsAnOwnedCopy_AndTheSetIsIndependentOfItsInputs()
    {
        var source = torch.tensor(new[] { 1f, 2f, 3f });
        using var set = new InMemoryTaskVectorSet(["t"], [new Dictionary<string, torch.Tensor> { ["w"] = source }]);
        source.add_(10f);
        source.Dispose();
        using (var copy = set.Get(0, "w"))
        {
            Assert.That(Values(copy), Is.EqualTo(new[] { 1f, 2f, 3f }));
            copy.mul_(0f);
        }

        using var again = set.Get(0, "w");
        Assert.That(Values(again), Is.EqualTo(new[] { 1f, 2f, 3f }));
        Assert.That(again.dtype, Is.EqualTo(torch.ScalarType.Float32));
    }

    [Test]
    public void NamesAndShapes_AreExposedInSortedOrder()
    {
        using var set = MakeSet(new Dictionary<string, torch.Tensor> { ["z"] = torch.zeros(2, 3), ["a.weight"] = torch.zeros(4), ["B"] = torch.zeros(1) });
        Assert.That(set.Count, Is.EqualTo(1));
        Assert.That(set.TaskNames, Is.EqualTo(new[] { "task0" }));
        Assert.That(set.TensorNames, Is.EqualTo(new[] { "B", "a.weight", "z" }));
        Assert.That(set.GetShape("z"), Is.EqualTo(new long[] { 2, 3 }));
        Assert.Throws<KeyNotFoundException>(() => set.GetShape("missing"));
        Assert.Throws<ArgumentOutOfRangeException>(() => set.Get(1, "z"));
    }

    [Test]
    public void MismatchedTasks_ListEveryOffendingTensor()
    {
        var ex = Assert.Throws<ArgumentException>(() => MakeSet(
            new() { ["a"] = torch.zeros(2), ["b"] = torch.zeros(3), ["c"] = torch.zeros(2, 2), ["ok"] = torch.zeros(1) },
            new() { ["a"] = torch.zeros(2), ["b"] = torch.zeros(4), ["c"] = torch.zeros(4), ["ok"] = torch.zeros(1), ["extra"] = torch.zeros(1) }));
        var message = ex!.Message;
        Assert.That(message, Does.Contain("3 tensor(s) differ"));
        Assert.That(message, Does.Contain("'b' has different shapes: 'task0' [3], 'task1' [4]"));
        Assert.That(message, Does.Contain("'c' has different shapes: 'task0' [2, 2], 'task1' [4]"));
        Assert.That(message, Does.Contain("'extra' is missing from task(s) 'task0'"));
        Assert.That(message, Does.Not.Contain("'a'").And.Not.Contain("'ok'"));
    }

    [Test]
    public void TaskNameCountMismatch_Throws()
    {
        using var t = torch.zeros(1);
        Assert.Throws<ArgumentException>(() => new InMemoryTaskVectorSet(["x", "y"], [new Dictionary<string, torch.Tensor> { ["w"] = t }]));
    }
}
