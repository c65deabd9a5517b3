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
}
