using Microsoft.ML.TaskVectors.TaskVectors;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// One tensor of every task, as the C# merge kernels read it: either τt itself, or θt together
/// with a shared θ0, in which case the kernel computes τt = θt − θ0 as it goes — one float32
/// subtraction, exactly what θt.sub_(θ0) gives — instead of a separate pass that writes τt out.
/// The tensors are contiguous float32 CPU tensors registered in the dispose scope that was current
/// when the batch was made; the batch is valid while they live.
/// </summary>
internal sealed unsafe class TaskTensorBatch
{
    private readonly IntPtr[] _pointers;

    /// <summary>Makes a batch of <paramref name="tensors"/> (θt when <paramref name="base"/> is given, else τt).</summary>
    public TaskTensorBatch(IReadOnlyList<torch.Tensor> tensors, torch.Tensor? @base = null)
    {
        if (tensors.Count == 0)
        {
            throw new ArgumentException("A batch needs at least one tensor.", nameof(tensors));
        }

        Tensors = tensors.Select(FloatKernels.AsContiguousFloat32).ToArray();
        Base = @base is null ? null : FloatKernels.AsContiguousFloat32(@base);
        Length = Tensors[0].numel();
        if (Tensors.Any(t => t.numel() != Length) || (Base is not null && Base.numel() != Length))
        {
            throw new ArgumentException("Every tensor of a batch must have the same number of entries.", nameof(tensors));
        }

        _pointers = Tensors.Select(t => (IntPtr)FloatKernels.Pointer(t)).ToArray();
        BasePointer = Base is null ? null : FloatKernels.Pointer(Base);
    }

    /// <summary>θt (when <see cref="Base"/> is set) or τt, one per task.</summary>
    public torch.Tensor[] Tensors { get; }

    /// <summary>θ0 to subtract from every tensor, or null when the tensors are τt already.</summary>
    public torch.Tensor? Base { get; }

    /// <summary>Number of tasks.</summary>
    public int Count => Tensors.Length;

    /// <summary>Entries per tensor.</summary>
    public long Length { get; }

    /// <summary>Address of task <paramref name="task"/>'s first entry.</summary>
    public float* Pointer(int task) => (float*)_pointers[task];

    /// <summary>Address of θ0's first entry, or null when there is no base.</summary>
    public float* BasePointer { get; }

    /// <summary>
    /// Makes the tensors τt in place (θt.sub_(θ0) for each task) when there is a base, so that
    /// <see cref="Tensors"/> can be handed to code that wants τt.
    /// </summary>
    public torch.Tensor[] SubtractBase()
    {
        if (Base is not null)
        {
            foreach (var t in Tensors)
            {
                t.sub_(Base);
            }
        }

        return Tensors;
    }
}

/// <summary>Reads one tensor of every task at once, as cheaply as the set allows.</summary>
internal static class TaskTensors
{
    /// <summary>
    /// Task tensors of <paramref name="tensorName"/> for t = 0 … N−1, whose τt equal
    /// <see cref="ITaskVectorSet.Get"/>, registered in the current dispose scope. A
    /// <see cref="TaskVectorPool"/> over one base reads the base once and leaves the subtraction to
    /// the kernels; DARE drops and rescales within the same pass.
    /// </summary>
    public static TaskTensorBatch Read(ITaskVectorSet set, string tensorName)
    {
        switch (set)
        {
            case TaskVectorPool pool when pool.ReadDifferenceParts(tensorName) is { } parts:
                return new TaskTensorBatch(parts.Finetuned, parts.Base);
            case DropAndRescaleTaskVectorSet dare:
                return dare.ReadBatch(tensorName);
            default:
                var all = new torch.Tensor[set.Count];
                for (int t = 0; t < all.Length; t++)
                {
                    all[t] = set.Get(t, tensorName);
                }

                return new TaskTensorBatch(all);
        }
    }

    /// <summary>τt of every task as tensors (registered in the current dispose scope).</summary>
    public static torch.Tensor[] ReadAll(ITaskVectorSet set, string tensorName) => Read(set, tensorName).SubtractBase();
}
