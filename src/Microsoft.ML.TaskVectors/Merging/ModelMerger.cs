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
        method.Prepare(taskVectors, Phase(progress, "prepare"), cancellationToken);
        return new MergedCheckpoint(@base, taskVectors, method);
    }

    /// <summary>
    /// Merges and writes a complete checkpoint (every base tensor, merged where task vectors exist)
    /// to <paramref name="outputPath"/> atomically. At most one tensor of each input is in memory at a time.
    /// When the base is a safetensors file (or a sharded Hugging Face checkpoint) and <paramref name="taskVectors"/>
    /// a <see cref="TaskVectorPool"/> over fine-tuned checkpoints of those kinds of that base (or over stored
    /// τ files), in any storage precision, fixed linear combinations (averaging, task arithmetic, negation),
    /// TIES and DARE skip tensors altogether and merge the files' bytes directly, in chunks of 256 KB on
    /// every core, each written to its place in the output; TIES and DARE give bit for bit what the tensor
    /// path gives.
    /// </summary>
    public static void MergeToFile(Checkpoint @base, ITaskVectorSet taskVectors, MergeMethod method, string outputPath,
        IProgress<MergeProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(method);
        if (TryMergeBytes(@base, taskVectors, method, outputPath, progress, cancellationToken)) return;
        using var merged = Merge(@base, taskVectors, method, progress, cancellationToken);
        SafetensorsWriter.Save(merged, outputPath, progress: Phase(progress, "write"), cancellationToken: cancellationToken);
    }

    /// <summary>
    /// The byte-level path of <see cref="MergeToFile"/>: writes the merge from the files' bytes and
    /// returns true, or returns false having written nothing when the inputs are not files it can
    /// read (<see cref="MergeInputFiles.TryOpen"/>) or the method has neither linear weights nor a kernel.
    /// </summary>
    internal static unsafe bool TryMergeBytes(Checkpoint @base, ITaskVectorSet taskVectors, MergeMethod method, string outputPath,
        IProgress<MergeProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(@base);
        ArgumentNullException.ThrowIfNull(taskVectors);
        var weights = method.LinearTaskWeights(taskVectors.Count);
        var kernel = weights is null ? method.CreateKernel() : null;
        if (weights is null && kernel is null) return false;
        using var files = MergeInputFiles.TryOpen(@base, taskVectors);
        if (files is null) return false;
        if (kernel is null)
            files.Write(outputPath, method.Name, LinearCombination.For(weights!, files.Differences), Phase(progress, "write"), cancellationToken);
        else
        {
            kernel.Prepare(files, Phase(progress, "prepare"), cancellationToken);
            files.Write(outputPath, method.Name, kernel.MergeChunk, Phase(progress, "write"), cancellationToken);
        }
        return true;
    }

    private static SynchronousProgress<double>? Phase(IProgress<MergeProgress>? progress, string phase) =>
        progress is null ? null : new SynchronousProgress<double>(f => progress.Report(new MergeProgress(phase, f)));
}
