using Microsoft.ML.TaskVectors.TaskVectors;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// A data-free merge: combines N task vectors into one merged delta, one tensor at a time, so that
/// the merged model is θ = θ0 + delta. Implementations read the N task tensors of one parameter
/// through <see cref="ITaskVectorSet.Get"/> and never hold whole models.
/// </summary>
public abstract class MergeMethod
{
    /// <summary>Short identifier of the method, e.g. <c>task-arithmetic</c> or <c>ties</c>.</summary>
    public abstract string Name { get; }

    /// <summary>
    /// Optional pass over all task vectors before merging (e.g. the global magnitude ranking of
    /// TIES). The default does nothing. Call it once per task-vector set before
    /// <see cref="MergeTensor"/>.
    /// </summary>
    /// <param name="taskVectors">The task vectors that will be merged.</param>
    /// <param name="progress">Receives the completed fraction in [0, 1].</param>
    /// <param name="cancellationToken">Cancels the pass between tensors.</param>
    public virtual void Prepare(ITaskVectorSet taskVectors, IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(taskVectors);
        progress?.Report(1.0);
    }

    /// <summary>
    /// Computes the merged delta of one tensor: a new float32 CPU tensor with the tensor's shape,
    /// owned by the caller, such that θ = θ0 + delta.
    /// </summary>
    /// <param name="tensorName">One of <see cref="ITaskVectorSet.TensorNames"/>.</param>
    /// <param name="taskVectors">The task vectors to merge.</param>
    public abstract torch.Tensor MergeTensor(string tensorName, ITaskVectorSet taskVectors);

    /// <summary>
    /// For methods whose delta is Σt wt·τt with fixed weights (averaging, task arithmetic, negation): the
    /// weights, which let <see cref="ModelMerger.MergeToFile"/> stream raw bytes instead of tensors; else null.
    /// </summary>
    internal virtual double[]? LinearTaskWeights(int taskCount) => null;

    /// <summary>
    /// For methods computed entry by entry over float32 task memory (TIES, DARE over task arithmetic
    /// or TIES): a new kernel, which lets <see cref="ModelMerger.MergeToFile"/> stream raw bytes
    /// instead of tensors, as <see cref="LinearTaskWeights"/> does for linear methods; else null.
    /// </summary>
    internal virtual TaskBatchKernel? CreateKernel() => null;

    /// <inheritdoc />
    public override string ToString() => Name;

    /// <summary>Validates the common arguments of <see cref="MergeTensor"/>.</summary>
    private protected static void ValidateArguments(string tensorName, ITaskVectorSet taskVectors)
    {
        ArgumentNullException.ThrowIfNull(tensorName);
        ArgumentNullException.ThrowIfNull(taskVectors);
        if (taskVectors.Count < 1)
        {
            throw new ArgumentException("The task-vector set holds no task vectors; at least one is required to merge.", nameof(taskVectors));
        }
    }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> unless <paramref name="value"/> is finite and ≥ 0.</summary>
    private protected static void RequireNonNegativeFinite(double value, string name)
    {
        if (!double.IsFinite(value) || value < 0)
        {
            throw new ArgumentOutOfRangeException(name, value, $"Option '{name}' must be a finite number ≥ 0 (range [0, +∞)); got {value}.");
        }
    }
}
