using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Runtime;
using Microsoft.ML.TaskVectors.TaskVectors;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// The byte-level path of <see cref="ModelMerger.MergeToFile"/>: the base and the N task-vector
/// sources as safetensors files, read in chunks with no tensors in between. Each worker thread
/// reads a chunk of every input straight into its own float32 buffers (F16 and BF16 widened
/// exactly, as <see cref="Checkpoint.ReadFloat32"/> widens them), a merge method combines them
/// (<see cref="LinearCombination"/> or a <see cref="TaskBatchKernel"/>), and the worker writes the
/// merged chunk to its place in the output file. With chunks of 256 KB a worker's N + 2 buffers (a
/// few MB) stay in the CPU's caches, so the inputs go from the page cache through the caches to the
/// output without a round trip through memory; memory use is N + 2 chunks per worker. A pool stored in
/// F16 or BF16 has its τt rounded in the buffers as the pool rounds them.
/// </summary>
internal sealed unsafe class MergeInputFiles : ITaskBatchSource, IDisposable
{
    /// <summary>
    /// Writes θ = θ0 + the merged delta of the tensor's entries [start, start + chunk.Length) to
    /// <paramref name="merged"/>, on the calling thread (see <see cref="TaskBatchKernel.MergeChunk"/>).
    /// </summary>
    public delegate void ChunkMerge(string tensorName, TaskBatch chunk, long start, float* theta0, float* merged, TensorEnd end);

    private readonly Checkpoint _base;
    private readonly Checkpoint[] _sources;
    private readonly TaskVectorPool _pool;
    private readonly HashSet<string> _merged;
    private readonly Workspace?[] _workspaces;

    /// <summary>The sources are θt over the base (τt = θt − θ0); false for stored τt.</summary>
    private readonly bool _fineTuned;

    private MergeInputFiles(Checkpoint @base, Checkpoint[] sources, TaskVectorPool pool, bool fineTuned)
    {
        _base = @base;
        _sources = sources;
        _pool = pool;
        _fineTuned = fineTuned;
        _merged = new HashSet<string>(pool.TensorNames, StringComparer.Ordinal);
        _workspaces = new Workspace?[Workers];
    }

    /// <summary>
    /// Opens the byte-level path over <paramref name="base"/> and <paramref name="taskVectors"/>, or
    /// returns null when it does not apply: the base is a safetensors file or a sharded Hugging Face
    /// checkpoint, the set a pool whose task vectors are all fine-tuned checkpoints of those kinds
    /// over this very base (τt = θt − θ0) or all stored τ files, and every merged tensor is F32, F16
    /// or BF16 with the base's shape.
    /// </summary>
    public static MergeInputFiles? TryOpen(Checkpoint @base, ITaskVectorSet taskVectors)
    {
        static bool Files(Checkpoint? c) => c is SafetensorsReader or ShardedCheckpoint;
        if (!Files(@base) || taskVectors is not TaskVectorPool pool)
        {
            return null;
        }

        bool differences = pool.TaskVectors.All(t => ReferenceEquals(t.BaseCheckpoint, @base));
        if (!differences && !pool.TaskVectors.All(t => t.BaseCheckpoint is null))
        {
            return null;
        }

        var sources = new Checkpoint[pool.Count];
        for (int t = 0; t < sources.Length; t++)
        {
            if (pool.TaskVectors[t].SourceCheckpoint is not { } source || !Files(source))
            {
                return null;
            }

            sources[t] = source;
        }

        static bool Supported(TensorDType d) => d is TensorDType.F32 or TensorDType.F16 or TensorDType.BF16;
        long largest = 1;
        foreach (var name in pool.TensorNames)
        {
            if (!@base.Contains(name))
            {
                return null; // the tensor path reports what does not fit
            }

            var info = @base.GetInfo(name);
            if (!Supported(info.DType) || sources.Any(s => !s.Contains(name) || s.GetInfo(name) is var i
                    && (!Supported(i.DType) || !i.Shape.AsSpan().SequenceEqual(info.Shape))))
            {
                return null;
            }

            largest = Math.Max(largest, info.ElementCount * sizeof(float));
        }

        // Tensors of 2 GB or more take the tensor path: nothing here holds a whole tensor, but no test covers
        // this path at that size (it would need checkpoints of several GB).
        return largest > Array.MaxLength ? null : new MergeInputFiles(@base, sources, pool, differences);
    }

    /// <summary>
    /// True when the chunks hold θt over θ0 (τt = θt − θ0, formed by the merge); false when they hold τt:
    /// stored τt, or τt already rounded to the pool's F16 or BF16 storage.
    /// </summary>
    public bool Differences => _fineTuned && _pool.StorageDType == TensorDType.F32;

    /// <inheritdoc />
    public int Count => _sources.Length;

    /// <inheritdoc />
    public IReadOnlyList<string> TensorNames => _pool.TensorNames;

    /// <inheritdoc />
    public long[] GetShape(string tensorName) => _pool.GetShape(tensorName);

    /// <inheritdoc />
    public int Workers => Environment.ProcessorCount;

    /// <inheritdoc />
    /// <remarks>The chunks hold θt with θ0 as their base, or τt alone (see <see cref="Differences"/>).</remarks>
    public void ReadChunks(string tensorName, Action<int, long, TaskBatch> use)
    {
        long length = _base.GetInfo(tensorName).ElementCount;
        long chunk = TaskBatchKernel.ChunkEntries;
        FloatKernels.RunWorkers((int)((length + chunk - 1) / chunk), Workers, (worker, item) =>
        {
            long start = item * chunk;
            use(worker, start, Load(worker, tensorName, start, Math.Min(chunk, length - start), withBase: false));
        });
    }

    /// <inheritdoc />
    /// <remarks>Each file reads only the ranges, packed one after another into a worker's buffers.</remarks>
    public void ReadRanges(int worker, string tensorName, IReadOnlyList<(long Start, long Length)> ranges, Action<long, TaskBatch> use)
    {
        for (int first = 0; first < ranges.Count;)
        {
            // As many ranges as fit the buffers (a longer range is read on its own, in a larger buffer).
            int last = first;
            long packed = ranges[first].Length;
            while (last + 1 < ranges.Count && packed + ranges[last + 1].Length <= TaskBatchKernel.ChunkEntries)
            {
                packed += ranges[++last].Length;
            }

            var space = Space(worker, packed);
            var group = ranges.Skip(first).Take(last - first + 1).ToArray();
            Parallel.For(_fineTuned ? 0 : 1, _sources.Length + 1, i =>
            {
                var destination = space.Inputs[i];
                foreach (var (start, length) in group)
                {
                    ReadFloat32(i == 0 ? _base : _sources[i - 1], tensorName, destination, start, length);
                    destination += length;
                }
            });
            RoundToStorage(space, packed);

            long offset = 0;
            foreach (var (start, length) in group)
            {
                use(start, space.Batch(offset, length, Differences));
                offset += length;
            }

            first = last + 1;
        }
    }

    /// <summary>
    /// Writes the merged checkpoint to <paramref name="outputPath"/> atomically: every base tensor in
    /// the base's order and element type, the merged ones computed chunk by chunk by
    /// <paramref name="merge"/> (chunks of <see cref="TaskBatchKernel.ChunkEntries"/>) and stored
    /// back in the base's element type, the rest copied byte for byte. The workers take chunks in
    /// file order and write each to its place; when a tensor's last chunk is in, the entries its
    /// <see cref="TensorEnd"/> names are overwritten.
    /// </summary>
    public void Write(string outputPath, string methodName, ChunkMerge merge, IProgress<double>? progress, CancellationToken cancellationToken)
    {
        var metadata = new Dictionary<string, string>(_base.Metadata, StringComparer.Ordinal)
        {
            ["merge_method"] = methodName,
            ["merged_tasks"] = string.Join(",", _pool.TaskNames),
        };
        var tensors = _base.Tensors;
        var items = new List<(int Tensor, long Start, long Length)>();
        var chunks = new int[tensors.Count];
        var ends = new TensorEnd?[tensors.Count];
        for (int i = 0; i < tensors.Count; i++)
        {
            var info = tensors[i];
            bool merged = _merged.Contains(info.Name);
            // Copied tensors move in chunks of the same byte size as merged float32 ones.
            long entries = merged ? info.ElementCount : info.ByteLength;
            long step = merged ? TaskBatchKernel.ChunkEntries : TaskBatchKernel.ChunkEntries * sizeof(float);
            for (long start = 0; start < entries || start == 0; start += step)
            {
                items.Add((i, start, Math.Min(step, entries - start)));
                chunks[i]++;
            }

            ends[i] = merged ? new TensorEnd() : null;
        }

        using var writer = SafetensorsWriter.Create(outputPath, tensors, metadata);
        long done = 0;
        double reported = 0;
        var gate = new object();
        FloatKernels.RunWorkers(items.Count, Workers, (worker, index) =>
        {
            cancellationToken.ThrowIfCancellationRequested();
            var (i, start, length) = items[index];
            var info = tensors[i];
            if (ends[i] is not { } end)
            {
                var space = Space(worker, (length + sizeof(float) - 1) / sizeof(float));
                var bytes = new Span<byte>(space.Output, (int)length);
                FileOf(_base, info.Name).ReadBytes(info.Name, start, bytes);
                writer.WriteBytesAt(info.Name, start, bytes);
            }
            else
            {
                var chunk = Load(worker, info.Name, start, length, withBase: true);
                var space = Space(worker, length);
                merge(info.Name, chunk, start, space.Inputs[0], space.Output, end);
                int size = Narrow(space.Output, (int)length, info.DType);
                writer.WriteBytesAt(info.Name, start * size, new ReadOnlySpan<byte>(space.Output, (int)length * size));
            }

            if (Interlocked.Decrement(ref chunks[i]) == 0 && ends[i] is { } finished)
            {
                Patch(writer, info, finished.Patches);
            }

            long now = Interlocked.Increment(ref done);
            if (progress is not null)
            {
                lock (gate)
                {
                    double fraction = (double)now / items.Count;
                    if (fraction > reported)
                    {
                        progress.Report(reported = fraction);
                    }
                }
            }
        });

        writer.Commit();
    }

    /// <summary>Writes single entries of a merged tensor (θ values in float32) over what its chunks wrote.</summary>
    private static void Patch(SafetensorsWriter writer, TensorInfo info, IReadOnlyList<(long Position, float Value)> patches)
    {
        float value = 0;
        foreach (var (position, theta) in patches)
        {
            value = theta;
            int size = Narrow(&value, 1, info.DType);
            writer.OverwriteBytesAt(info.Name, position * size, new ReadOnlySpan<byte>(&value, size));
        }
    }

    /// <summary>
    /// Reads entries [start, start + length) of every source (and of the base when asked, or when the
    /// sources are θt) into the worker's buffers.
    /// </summary>
    private TaskBatch Load(int worker, string tensorName, long start, long length, bool withBase)
    {
        var space = Space(worker, length);
        if (withBase || _fineTuned)
        {
            ReadFloat32(_base, tensorName, space.Inputs[0], start, length);
        }

        for (int t = 0; t < _sources.Length; t++)
        {
            ReadFloat32(_sources[t], tensorName, space.Inputs[t + 1], start, length);
        }

        RoundToStorage(space, length);
        return space.Batch(0, length, Differences);
    }

    /// <summary>
    /// For a pool stored in F16 or BF16: the first <paramref name="length"/> entries of each source buffer
    /// become τt rounded to the storage and widened back, as the pool's float32 tensors hold them (the
    /// difference θt − θ0 in float32, then the conversion torch makes); nothing for F32.
    /// </summary>
    private void RoundToStorage(Workspace space, long length)
    {
        var storage = _pool.StorageDType;
        if (storage == TensorDType.F32)
        {
            return;
        }

        var b = _fineTuned ? space.Inputs[0] : null;
        for (int t = 0; t < _sources.Length; t++)
        {
            var x = space.Inputs[t + 1];
            for (long i = 0; i < length; i++)
            {
                float tau = b is null ? x[i] : x[i] - b[i];
                x[i] = storage == TensorDType.F16 ? (float)(Half)tau : FromBFloat16(ToBFloat16(tau));
            }
        }
    }

    /// <summary>The worker's buffers, grown to hold <paramref name="entries"/> float32 entries each.</summary>
    private Workspace Space(int worker, long entries)
    {
        var space = _workspaces[worker];
        if (space is null || space.Capacity < entries)
        {
            space?.Dispose();
            space = _workspaces[worker] = new Workspace(_sources.Length + 1, Math.Max(entries, TaskBatchKernel.ChunkEntries));
        }

        return space;
    }

    /// <summary>
    /// A worker's float32 buffers: θ0, one per source, and the output, in one block of huge pages (a few MB
    /// that every merge would otherwise fault in 4 KB at a time).
    /// </summary>
    private sealed class Workspace : IDisposable
    {
        private readonly float* _memory;

        public Workspace(int inputs, long capacity)
        {
            Capacity = capacity;
            _memory = (float*)HugePageMemory.Allocate((inputs + 1) * capacity * sizeof(float));
            Inputs = new float*[inputs];
            for (int i = 0; i < inputs; i++)
            {
                Inputs[i] = _memory + i * capacity;
            }

            Output = _memory + inputs * capacity;
        }

        public long Capacity { get; }

        public float*[] Inputs { get; }

        public float* Output { get; }

        /// <summary>Entries [offset, offset + length) of the buffers as a batch: θt over θ0, or τt.</summary>
        public TaskBatch Batch(long offset, long length, bool differences)
        {
            var tasks = new IntPtr[Inputs.Length - 1];
            for (int t = 0; t < tasks.Length; t++)
            {
                tasks[t] = (IntPtr)(Inputs[t + 1] + offset);
            }

            return new(tasks, differences ? Inputs[0] + offset : null, length);
        }

        public void Dispose() => HugePageMemory.Free(_memory);
    }

    /// <summary>
    /// Reads the entries [<paramref name="start"/>, <paramref name="start"/> + <paramref name="count"/>)
    /// of an F32, F16 or BF16 tensor into <paramref name="destination"/> as float32. Narrower data is
    /// read into the destination's second half and widened from the front, in place: entry i is read
    /// before anything is written over it.
    /// </summary>
    private static void ReadFloat32(Checkpoint checkpoint, string tensorName, float* destination, long start, long count)
    {
        var reader = FileOf(checkpoint, tensorName);
        var info = reader.GetInfo(tensorName);
        int n = (int)count;
        if (info.DType == TensorDType.F32)
        {
            reader.ReadBytes(tensorName, start * sizeof(float), new Span<byte>(destination, n * sizeof(float)));
            return;
        }

        var raw = (ushort*)destination + n;
        reader.ReadBytes(tensorName, start * sizeof(ushort), new Span<byte>(raw, n * sizeof(ushort)));
        if (info.DType == TensorDType.F16)
        {
            for (int i = 0; i < n; i++)
            {
                destination[i] = (float)BitConverter.UInt16BitsToHalf(raw[i]);
            }
        }
        else
        {
            for (int i = 0; i < n; i++)
            {
                destination[i] = FromBFloat16(raw[i]);
            }
        }
    }

    /// <summary>A BF16 value's float32 (exact).</summary>
    private static float FromBFloat16(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>The BF16 nearest to <paramref name="value"/>, ties to even, as torch rounds (a NaN stays a NaN).</summary>
    private static ushort ToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        return float.IsNaN(value) ? (ushort)((bits >> 16) | 0x40) : (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    /// <summary>The safetensors file holding <paramref name="tensorName"/> of a file or sharded checkpoint.</summary>
    private static SafetensorsReader FileOf(Checkpoint checkpoint, string tensorName) =>
        checkpoint as SafetensorsReader ?? ((ShardedCheckpoint)checkpoint).ShardOf(tensorName);

    /// <summary>
    /// The merged float32 values in the output's element type, in place from the front: rounded to
    /// nearest even as torch's conversion does (a NaN stays a NaN). Returns the element size.
    /// </summary>
    private static int Narrow(float* values, int n, TensorDType dtype)
    {
        switch (dtype)
        {
            case TensorDType.F32:
                return sizeof(float);
            case TensorDType.F16:
                for (int i = 0; i < n; i++)
                {
                    ((Half*)values)[i] = (Half)values[i];
                }

                return sizeof(ushort);
            default:
                for (int i = 0; i < n; i++)
                {
                    ((ushort*)values)[i] = ToBFloat16(values[i]);
                }

                break;
        }

        return sizeof(ushort);
    }

    /// <summary>Frees the buffers (the readers belong to the caller).</summary>
    public void Dispose()
    {
        foreach (var space in _workspaces)
        {
            space?.Dispose();
        }
    }
}
