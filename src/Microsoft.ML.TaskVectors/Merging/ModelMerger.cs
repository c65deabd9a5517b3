using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Runtime;
using Microsoft.ML.TaskVectors.TaskVectors;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>Progress of a merge: which phase, and the fraction of it done.</summary>
/// <param name="Phase">"prepare" (a method's pass over the task vectors, such as TIES's global ranking) or "write".</param>
/// <param name="Fraction">0 … 1 within the phase.</param>
public readonly record struct MergeProgress(string Phase, double Fraction);

/// <summary>Runs a merge method over a base model and task vectors, streaming tensor by tensor.</summary>
public static class ModelMerger
{
    /// <summary>Prepares <paramref name="method"/> and returns the merged model as a lazily computed checkpoint.</summary>
    public static MergedCheckpoint Merge(Checkpoint @base, ITaskVectorSet taskVectors, MergeMethod method,
        IProgress<MergeProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(@base);
        ArgumentNullException.ThrowIfNull(taskVectors);
        ArgumentNullException.ThrowIfNull(method);
        method.Prepare(taskVectors, progress is null ? null : new SynchronousProgress<double>(f => progress.Report(new MergeProgress("prepare", f))), cancellationToken);
        return new MergedCheckpoint(@base, taskVectors, method);
    }

    /// <summary>
    /// Merges and writes a complete checkpoint (every base tensor, merged where task vectors exist)
    /// to <paramref name="outputPath"/> atomically. At most one tensor of each input is in memory at a time.
    /// Fixed linear combinations (averaging, task arithmetic, negation) of safetensors files skip tensors
    /// altogether and combine the files' bytes directly.
    /// </summary>
    public static void MergeToFile(Checkpoint @base, ITaskVectorSet taskVectors, MergeMethod method, string outputPath,
        IProgress<MergeProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(method);
        var write = progress is null ? null : new SynchronousProgress<double>(f => progress.Report(new MergeProgress("write", f)));
        if (LinearMergeWriter.TryWrite(@base, taskVectors, method, outputPath, write, cancellationToken)) return;
        using var merged = Merge(@base, taskVectors, method, progress, cancellationToken);
        SafetensorsWriter.Save(merged, outputPath, progress: write, cancellationToken: cancellationToken);
    }
}
