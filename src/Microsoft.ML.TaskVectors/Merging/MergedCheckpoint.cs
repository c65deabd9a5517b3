using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Runtime;
using Microsoft.ML.TaskVectors.TaskVectors;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// A merged model θ = θ0 + merge(τ1 … τN), computed one tensor at a time when read. Every tensor of
/// the base is present; those covered by the task vectors are merged and stored back in the base's
/// element type, the rest (buffers, other towers) are the base's own.
/// </summary>
public sealed class MergedCheckpoint : Checkpoint
{
    private readonly Checkpoint _base;
    private readonly ITaskVectorSet _taskVectors;
    private readonly HashSet<string> _merged;
    private readonly Dictionary<string, string> _metadata;
    private readonly NativeHeap.Guard _heap;

    /// <summary>
    /// Creates the view. <paramref name="method"/> must already be prepared on
    /// <paramref name="taskVectors"/> (see <see cref="ModelMerger.Merge"/>, which does both).
    /// </summary>
    /// <exception cref="ArgumentException">A task-vector tensor is missing from the base or has another shape.</exception>
    public MergedCheckpoint(Checkpoint @base, ITaskVectorSet taskVectors, MergeMethod method)
    {
        _base = @base;
        _taskVectors = taskVectors;
        Method = method;
        var problems = taskVectors.TensorNames
            .Where(n => !@base.Contains(n) || !@base.GetInfo(n).Shape.AsSpan().SequenceEqual(taskVectors.GetShape(n)))
            .Select(n => @base.Contains(n)
                ? $"'{n}' has shape {@base.GetInfo(n).ShapeText} in the base but [{string.Join(", ", taskVectors.GetShape(n))}] in the task vectors"
                : $"'{n}' is not in the base")
            .ToList();
        if (problems.Count > 0)
            throw new ArgumentException($"The task vectors do not fit base {@base.Location}:\n  " + string.Join("\n  ", problems), nameof(taskVectors));
        _merged = new HashSet<string>(taskVectors.TensorNames, StringComparer.Ordinal);
        // Merges allocate tensors of many sizes; bound what the heap keeps to about half a model (at least 256 MB).
        _heap = new NativeHeap.Guard(Math.Max(256L << 20, @base.Tensors.Sum(t => t.ElementCount) * 2));
        _metadata = new Dictionary<string, string>(@base.Metadata, StringComparer.Ordinal)
        {
            ["merge_method"] = method.Name,
            ["merged_tasks"] = string.Join(",", taskVectors.TaskNames),
        };
    }

    /// <summary>The merge method.</summary>
    public MergeMethod Method { get; }

    /// <inheritdoc />
    public override string Location => $"{Method.Name} merge of {_taskVectors.Count} task vector(s) onto {_base.Location}";

    /// <inheritdoc />
    public override IReadOnlyList<TensorInfo> Tensors => _base.Tensors;

    /// <inheritdoc />
    public override IReadOnlyDictionary<string, string> Metadata => _metadata;

    /// <summary>True when the tensor is changed by the merge.</summary>
    public bool IsMerged(string tensorName) => _merged.Contains(tensorName);

    /// <inheritdoc />
    protected override Tensor ReadCore(TensorInfo info)
    {
        if (!_merged.Contains(info.Name)) return _base.Read(info.Name);
        Tensor result;
        using (var scope = NewDisposeScope())
        {
            var merged = _base.ReadFloat32(info.Name).add_(Method.MergeTensor(info.Name, _taskVectors));
            result = merged.to(info.DType.ToScalarType()!.Value).MoveToOuterDisposeScope();
        }
        _heap.Check();
        return result;
    }
}
