using Microsoft.ML.TaskVectors.Runtime;
using Microsoft.ML.TaskVectors.TaskVectors;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// One tensor of every task as float32 memory, as the C# merge kernels read it: either τt itself,
/// or θt together with a shared θ0, in which case the kernel computes τt = θt − θ0 as it goes — one
/// float32 subtraction, exactly what θt.sub_(θ0) gives — instead of a separate pass that writes τt
/// out. The memory belongs to whoever made the batch (tensors, or the byte-level reader's buffers)
/// and may be written by the kernels (DARE drops in place).
/// </summary>
internal unsafe class TaskBatch
{
    private readonly IntPtr[] _pointers;

    /// <summary>A batch over <paramref name="pointers"/>[t] (θt when <paramref name="basePointer"/> is set, else τt), each <paramref name="length"/> entries.</summary>
    public TaskBatch(IntPtr[] pointers, float* basePointer, long length)
    {
        if (pointers.Length == 0)
        {
            throw new ArgumentException("A batch needs at least one task.", nameof(pointers));
        }

        _pointers = pointers;
        BasePointer = basePointer;
        Length = length;
    }

    /// <summary>Number of tasks.</summary>
    public int Count => _pointers.Length;

    /// <summary>Entries per tensor.</summary>
    public long Length { get; }

    /// <summary>Address of task <paramref name="task"/>'s first entry.</summary>
    public float* Pointer(int task) => (float*)_pointers[task];

    /// <summary>Address of θ0's first entry, or null when the tasks' memory holds τt already.</summary>
    public float* BasePointer { get; }

    /// <summary>The same task memory as τt, once a kernel has subtracted θ0 from it in place.</summary>
    public TaskBatch WithoutBase() => new(_pointers, null, Length);

    /// <summary>The entries [<paramref name="start"/>, <paramref name="start"/> + <paramref name="length"/>) of every task (and of θ0).</summary>
    public TaskBatch Slice(long start, long length)
    {
        if (start < 0 || length < 0 || start + length > Length)
        {
            throw new ArgumentOutOfRangeException(nameof(start), $"Entries [{start}, {start + length}) are not within the batch's {Length}.");
        }

        return new(_pointers.Select(p => (IntPtr)((float*)p + start)).ToArray(), BasePointer is null ? null : BasePointer + start, length);
    }
}

/// <summary>
/// A <see cref="TaskBatch"/> over contiguous float32 CPU tensors registered in the dispose scope
/// that was current when the batch was made; the batch is valid while they live.
/// </summary>
internal sealed unsafe class TaskTensorBatch : TaskBatch
{
    /// <summary>Makes a batch of <paramref name="tensors"/> (θt when <paramref name="base"/> is given, else τt).</summary>
    public TaskTensorBatch(IReadOnlyList<torch.Tensor> tensors, torch.Tensor? @base = null)
        : this(AsFloat32(tensors, @base), @base is null ? null : FloatKernels.AsContiguousFloat32(@base))
    {
    }

    private TaskTensorBatch(torch.Tensor[] tensors, torch.Tensor? @base)
        : base(tensors.Select(t => (IntPtr)FloatKernels.Pointer(t)).ToArray(), @base is null ? null : FloatKernels.Pointer(@base), tensors[0].numel())
    {
        Tensors = tensors;
        Base = @base;
    }

    /// <summary>θt (when <see cref="Base"/> is set) or τt, one per task.</summary>
    public torch.Tensor[] Tensors { get; }

    /// <summary>θ0 to subtract from every tensor, or null when the tensors are τt already.</summary>
    public torch.Tensor? Base { get; }

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

    private static torch.Tensor[] AsFloat32(IReadOnlyList<torch.Tensor> tensors, torch.Tensor? @base)
    {
        if (tensors.Count == 0)
        {
            throw new ArgumentException("A batch needs at least one tensor.", nameof(tensors));
        }

        var converted = tensors.Select(FloatKernels.AsContiguousFloat32).ToArray();
        long length = converted[0].numel();
        if (converted.Any(t => t.numel() != length) || (@base is not null && @base.numel() != length))
        {
            throw new ArgumentException("Every tensor of a batch must have the same number of entries.", nameof(tensors));
        }

        return converted;
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

    /// <summary>
    /// The set as a <see cref="ITaskBatchSource"/>: each batch read by <see cref="Read"/> in a
    /// dispose scope of its own, freed after use, with the native heap trimmed when a pass has grown
    /// the process by more than 256 MB (see <see cref="NativeHeap.Guard"/>).
    /// </summary>
    public static ITaskBatchSource Source(ITaskVectorSet set) => new SetSource(set);

    private sealed class SetSource(ITaskVectorSet set) : ITaskBatchSource
    {
        private readonly NativeHeap.Guard _heap = new(256L << 20);

        public int Count => set.Count;

        public IReadOnlyList<string> TensorNames => set.TensorNames;

        public long[] GetShape(string tensorName) => set.GetShape(tensorName);

        public int Workers => Environment.ProcessorCount;

        public void ReadChunks(string tensorName, Action<int, long, TaskBatch> use) =>
            Read(tensorName, batch => FloatKernels.ForRanges(batch.Length, Workers, (worker, start, end) => use(worker, start, batch.Slice(start, end - start))));

        private void Read(string tensorName, Action<TaskBatch> use)
        {
            using (var scope = torch.NewDisposeScope())
            {
                use(TaskTensors.Read(set, tensorName));
            }

            _heap.Check();
        }

        /// <remarks>One call at a time, whatever the worker: a set may load and cache its tensors lazily.</remarks>
        public void ReadRanges(int worker, string tensorName, IReadOnlyList<(long Start, long Length)> ranges, Action<long, TaskBatch> use)
        {
            lock (_heap)
            {
                Read(tensorName, batch =>
                {
                    foreach (var (start, length) in ranges)
                    {
                        use(start, batch.Slice(start, length));
                    }
                });
            }
        }
    }
}
