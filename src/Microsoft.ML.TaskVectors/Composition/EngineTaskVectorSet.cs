using Microsoft.ML.TaskVectors.TaskVectors;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Composition;

/// <summary>
/// The task vectors a <see cref="CompositionEngine"/> holds, read back from its stacks (a task's rows summed over
/// its blocks), for data-free methods that work on τ directly such as WUDI. Tensors outside the vision tower, which
/// the engine ignores, are not in it.
/// </summary>
internal sealed class EngineTaskVectorSet(CompositionEngine engine) : ITaskVectorSet
{
    public int Count => engine.TaskCount;

    public IReadOnlyList<string> TaskNames => engine.TaskNames;

    public IReadOnlyList<string> TensorNames { get; } = engine.Composed.Keys.ToArray();

    public long[] GetShape(string tensorName) => Composed(tensorName).Shape.ToArray();

    public Tensor Get(int task, string tensorName)
    {
        if ((uint)task >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(task), task, $"The engine holds {Count} task vectors.");
        var composed = Composed(tensorName);
        using var scope = NewDisposeScope();
        // Row r + 1 of the stack belongs to task Columns[r] / M.
        var rows = composed.Columns.floor_divide(engine.BlockCount).eq(task).nonzero().squeeze(1) + 1;
        return composed.Stack.index_select(0, rows).sum(dim: 0).view(composed.Shape).MoveToOuterDisposeScope();
    }

    private ComposedTensor Composed(string name) => engine.Composed.TryGetValue(name, out var c)
        ? c
        : throw new ArgumentException($"The engine composes no tensor named '{name}'.", nameof(name));
}
