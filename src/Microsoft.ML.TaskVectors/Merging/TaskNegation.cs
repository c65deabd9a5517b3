using Microsoft.ML.TaskVectors.TaskVectors;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// Task negation (forgetting): delta = −λ·Σt τt, i.e. θ = θ0 − λ·τ for a single task.
/// </summary>
public sealed class TaskNegation : MergeMethod
{
    /// <summary>Creates the method.</summary>
    /// <param name="lambda">Scaling coefficient λ, finite and ≥ 0.</param>
    public TaskNegation(double lambda = 1.0)
    {
        RequireNonNegativeFinite(lambda, nameof(lambda));
        Lambda = lambda;
    }

    /// <summary>Scaling coefficient λ.</summary>
    public double Lambda { get; }

    /// <inheritdoc />
    public override string Name => "negate";

    /// <inheritdoc />
    public override torch.Tensor MergeTensor(string tensorName, ITaskVectorSet taskVectors)
    {
        ValidateArguments(tensorName, taskVectors);
        using var scope = torch.NewDisposeScope();
        var sum = taskVectors.Sum(tensorName);
        return sum.mul_(-Lambda).MoveToOuterDisposeScope();
    }

    internal override double[]? LinearTaskWeights(int taskCount) => Enumerable.Repeat(-Lambda, taskCount).ToArray();
}
