using Microsoft.ML.TaskVectors.TaskVectors;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>Weight averaging: delta = (1/N)·Σt τt.</summary>
public sealed class WeightAveraging : MergeMethod
{
    /// <inheritdoc />
    public override string Name => "average";

    /// <inheritdoc />
    public override torch.Tensor MergeTensor(string tensorName, ITaskVectorSet taskVectors)
    {
        ValidateArguments(tensorName, taskVectors);
        using var scope = torch.NewDisposeScope();
        var sum = taskVectors.Sum(tensorName);
        return sum.div_(taskVectors.Count).MoveToOuterDisposeScope();
    }

    internal override double[]? LinearTaskWeights(int taskCount) => Enumerable.Repeat(1.0 / taskCount, taskCount).ToArray();
}
