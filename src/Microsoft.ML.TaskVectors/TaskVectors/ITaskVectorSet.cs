using TorchSharp;

namespace Microsoft.ML.TaskVectors.TaskVectors;

/// <summary>
/// N task vectors over the same tensors, read one tensor at a time. Merge methods, statistics and
/// the composition engine consume task vectors through this view so that no caller has to hold
/// whole models in memory.
/// </summary>
public interface ITaskVectorSet
{
    /// <summary>Number of task vectors N.</summary>
    int Count { get; }

    /// <summary>Display names of the task vectors, one per task, in order.</summary>
    IReadOnlyList<string> TaskNames { get; }

    /// <summary>Names of the tensors every task vector holds, in a fixed (sorted) order.</summary>
    IReadOnlyList<string> TensorNames { get; }

    /// <summary>Shape of the named tensor (the same in every task vector).</summary>
    long[] GetShape(string tensorName);

    /// <summary>
    /// Reads task vector <paramref name="task"/>'s tensor <paramref name="tensorName"/> as a new
    /// float32 CPU tensor owned by the caller. Reading the same entry twice returns equal values.
    /// </summary>
    torch.Tensor Get(int task, string tensorName);

    /// <summary>
    /// Σt τt for one tensor as a new float32 CPU tensor owned by the caller. Implementations may
    /// compute it faster than N reads (a pool over one base reads the base once).
    /// </summary>
    torch.Tensor Sum(string tensorName) => SumOfReads(this, tensorName);

    /// <summary>Σt τt computed by reading each task vector's tensor in turn.</summary>
    protected static torch.Tensor SumOfReads(ITaskVectorSet set, string tensorName)
    {
        var sum = set.Get(0, tensorName);
        for (int t = 1; t < set.Count; t++)
        {
            using var next = set.Get(t, tensorName);
            sum.add_(next);
        }
        return sum;
    }
}
