using Microsoft.ML.TaskVectors.TaskVectors;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>A view of a task-vector set without one of its task vectors (leave-one-out); reads go to the full set.</summary>
internal sealed class TaskVectorSubset : ITaskVectorSet
{
    private readonly ITaskVectorSet _set;
    private readonly int[] _kept;

    /// <param name="set">The full set.</param>
    /// <param name="dropped">The index of the task vector to leave out.</param>
    public TaskVectorSubset(ITaskVectorSet set, int dropped)
    {
        ArgumentNullException.ThrowIfNull(set);
        if ((uint)dropped >= (uint)set.Count)
            throw new ArgumentOutOfRangeException(nameof(dropped), dropped, $"The task vector to leave out must be an index in [0, {set.Count - 1}].");
        if (set.Count < 2)
            throw new ArgumentException("Leaving a task vector out needs a set of at least 2.", nameof(set));
        _set = set;
        _kept = Enumerable.Range(0, set.Count).Where(t => t != dropped).ToArray();
        TaskNames = _kept.Select(t => set.TaskNames[t]).ToArray();
    }

    public int Count => _kept.Length;

    public IReadOnlyList<string> TaskNames { get; }

    public IReadOnlyList<string> TensorNames => _set.TensorNames;

    public long[] GetShape(string tensorName) => _set.GetShape(tensorName);

    public torch.Tensor Get(int task, string tensorName)
    {
        if ((uint)task >= (uint)_kept.Length)
            throw new ArgumentOutOfRangeException(nameof(task), task, $"Task index must be in [0, {_kept.Length - 1}].");
        return _set.Get(_kept[task], tensorName);
    }
}
