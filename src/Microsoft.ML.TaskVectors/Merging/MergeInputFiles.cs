using System.Runtime.InteropServices;
using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.TaskVectors;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// The byte-level path of <see cref="ModelMerger.MergeToFile"/>: the base and the N task-vector
/// sources as safetensors files, read one tensor at a time with no tensors in between. A read takes
/// the tensor of every input in parallel straight into reused float32 buffers (F16 and BF16 widened
/// exactly, as <see cref="Checkpoint.ReadFloat32"/> widens them); a merge method combines them
/// (<see cref="LinearCombination"/> or a <see cref="TaskBatchKernel"/>) and <see cref="Write"/>
/// streams the merged checkpoint out. Memory: N + 2 buffers the size of the largest merged tensor
/// in float32 (the output buffer also holds the largest copied one).
/// </summary>
internal sealed unsafe class MergeInputFiles : ITaskBatchSource, IDisposable
{
    /// <summary>Computes the merged θ of one tensor (float32, <c>tasks.Length</c> entries) into <paramref name="merged"/>.</summary>
    public delegate void TensorMerge(string tensorName, TaskBatch tasks, float* theta0, float* merged);

    private readonly SafetensorsReader _base;
    private readonly SafetensorsReader[] _sources;
    private readonly TaskVectorPool _pool;
    private readonly HashSet<string> _merged;
    private readonly IntPtr[] _buffers; // θ0, then one per source
    private readonly IntPtr[] _taskBuffers;
    private readonly float* _output;
    private readonly long _inputBytes;

    private MergeInputFiles(SafetensorsReader @base, SafetensorsReader[] sources, TaskVectorPool pool, bool differences, long inputBytes, long outputBytes)
    {
        _base = @base;
        _sources = sources;
        _pool = pool;
        Differences = differences;
        _merged = new HashSet<string>(pool.TensorNames, StringComparer.Ordinal);
        // Native buffers: the kernels take addresses, and these need no pinning.
        _buffers = new IntPtr[sources.Length + 1];
        for (int i = 0; i < _buffers.Length; i++)
        {
            _buffers[i] = (IntPtr)NativeMemory.AlignedAlloc((nuint)inputBytes, 64);
        }

        _taskBuffers = _buffers[1..];
        _inputBytes = inputBytes;
        _output = (float*)NativeMemory.AlignedAlloc((nuint)outputBytes, 64);
    }

    /// <summary>
    /// Opens the byte-level path over <paramref name="base"/> and <paramref name="taskVectors"/>, or
    /// returns null when it does not apply: the base is a safetensors file, the set a pool stored in
    /// F32 whose task vectors are all fine-tuned safetensors files over this very base (τt = θt − θ0)
    /// or all stored τ files, and every merged tensor is F32, F16 or BF16 with the base's shape.
    /// </summary>
    public static MergeInputFiles? TryOpen(Checkpoint @base, ITaskVectorSet taskVectors)
    {
        if (@base is not SafetensorsReader baseReader || taskVectors is not TaskVectorPool { StorageDType: TensorDType.F32 } pool)
        {
            return null;
        }

        bool differences = pool.TaskVectors.All(t => ReferenceEquals(t.BaseCheckpoint, @base));
        if (!differences && !pool.TaskVectors.All(t => t.BaseCheckpoint is null))
        {
            return null;
        }

        var sources = new SafetensorsReader[pool.Count];
        for (int t = 0; t < sources.Length; t++)
        {
            if (pool.TaskVectors[t].SourceCheckpoint is not SafetensorsReader reader)
            {
                return null;
            }

            sources[t] = reader;
        }

        static bool Supported(TensorDType d) => d is TensorDType.F32 or TensorDType.F16 or TensorDType.BF16;
        long largest = 1;
        foreach (var name in pool.TensorNames)
        {
            if (!baseReader.Contains(name))
            {
                return null; // the tensor path reports what does not fit
            }

            var info = baseReader.GetInfo(name);
            if (!Supported(info.DType) || sources.Any(s => !s.Contains(name) || s.GetInfo(name) is var i
                    && (!Supported(i.DType) || !i.Shape.AsSpan().SequenceEqual(info.Shape))))
            {
                return null;
            }

            largest = Math.Max(largest, info.ElementCount * sizeof(float));
        }

        long output = Math.Max(largest, baseReader.Tensors.Max(t => t.ByteLength));
        // Spans stop at 2 GB: larger tensors take the tensor path.
        return output > Array.MaxLength ? null : new MergeInputFiles(baseReader, sources, pool, differences, largest, output);
    }

    /// <summary>True when the sources are θt over the base (τt = θt − θ0); false for stored τt.</summary>
    public bool Differences { get; }

    /// <inheritdoc />
    public int Count => _sources.Length;

    /// <inheritdoc />
    public IReadOnlyList<string> TensorNames => _pool.TensorNames;

    /// <inheritdoc />
    public long[] GetShape(string tensorName) => _pool.GetShape(tensorName);

    /// <inheritdoc />
    /// <remarks>The batch holds θt with θ0 as its base, or τt alone (θ0 is then not read).</remarks>
    public void Read(string tensorName, Action<TaskBatch> use) => use(Load(tensorName, Differences));

    /// <inheritdoc />
    /// <remarks>Each file reads only the ranges, packed one after another into its buffer.</remarks>
    public void ReadRanges(string tensorName, IReadOnlyList<(long Start, long Length)> ranges, Action<long, TaskBatch> use)
    {
        long packed = ranges.Sum(r => r.Length);
        if (packed * sizeof(float) > _inputBytes)
        {
            throw new ArgumentException($"The ranges of tensor '{tensorName}' hold more entries than the tensor.", nameof(ranges));
        }

        Parallel.For(Differences ? 0 : 1, _buffers.Length, i =>
        {
            var reader = i == 0 ? _base : _sources[i - 1];
            var destination = (float*)_buffers[i];
            foreach (var (start, length) in ranges)
            {
                ReadFloat32(reader, tensorName, destination, start, length);
                destination += length;
            }
        });

        long offset = 0;
        foreach (var (start, length) in ranges)
        {
            var batch = new TaskBatch(_taskBuffers.Select(p => (IntPtr)((float*)p + offset)).ToArray(), Differences ? (float*)_buffers[0] + offset : null, length);
            use(start, batch);
            offset += length;
        }
    }

    /// <summary>
    /// Writes the merged checkpoint to <paramref name="outputPath"/> atomically: every base tensor in
    /// the base's order and element type, the merged ones computed by <paramref name="merge"/> and
    /// stored back in the base's element type, the rest copied byte for byte.
    /// </summary>
    public void Write(string outputPath, string methodName, TensorMerge merge, IProgress<double>? progress, CancellationToken cancellationToken)
    {
        var metadata = new Dictionary<string, string>(_base.Metadata, StringComparer.Ordinal)
        {
            ["merge_method"] = methodName,
            ["merged_tasks"] = string.Join(",", _pool.TaskNames),
        };
        var tensors = _base.Tensors;
        using var writer = SafetensorsWriter.Create(outputPath, tensors, metadata);
        for (int i = 0; i < tensors.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var info = tensors[i];
            var bytes = new Span<byte>(_output, (int)info.ByteLength);
            if (!_merged.Contains(info.Name))
            {
                _base.ReadBytes(info.Name, bytes);
            }
            else
            {
                merge(info.Name, Load(info.Name, withBase: true), (float*)_buffers[0], _output);
                Narrow(_output, (int)info.ElementCount, info.DType);
            }

            writer.WriteBytes(info.Name, bytes);
            progress?.Report((double)(i + 1) / tensors.Count);
        }

        writer.Commit();
    }

    /// <summary>Reads one tensor of every source (and of the base when asked) in parallel into the buffers.</summary>
    private TaskBatch Load(string tensorName, bool withBase)
    {
        long length = _base.GetInfo(tensorName).ElementCount;
        Parallel.For(withBase ? 0 : 1, _buffers.Length, i => ReadFloat32(i == 0 ? _base : _sources[i - 1], tensorName, (float*)_buffers[i], 0, length));
        return new TaskBatch(_taskBuffers, Differences ? (float*)_buffers[0] : null, length);
    }

    /// <summary>
    /// Reads the entries [<paramref name="start"/>, <paramref name="start"/> + <paramref name="count"/>)
    /// of an F32, F16 or BF16 tensor into <paramref name="destination"/> as float32. Narrower data is
    /// read into the destination's second half and widened from the front, in place: entry i is read
    /// before anything is written over it.
    /// </summary>
    private static void ReadFloat32(SafetensorsReader reader, string tensorName, float* destination, long start, long count)
    {
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
                destination[i] = BitConverter.Int32BitsToSingle(raw[i] << 16);
            }
        }
    }

    /// <summary>
    /// The merged float32 values in the output's element type, in place from the front: rounded to
    /// nearest even as torch's conversion does (a NaN stays a NaN).
    /// </summary>
    private static void Narrow(float* values, int n, TensorDType dtype)
    {
        switch (dtype)
        {
            case TensorDType.F32:
                break;
            case TensorDType.F16:
                for (int i = 0; i < n; i++)
                {
                    ((Half*)values)[i] = (Half)values[i];
                }

                break;
            default:
                for (int i = 0; i < n; i++)
                {
                    uint bits = BitConverter.SingleToUInt32Bits(values[i]);
                    ((ushort*)values)[i] = float.IsNaN(values[i]) ? (ushort)((bits >> 16) | 0x40) : (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
                }

                break;
        }
    }

    /// <summary>Frees the buffers (the readers belong to the caller).</summary>
    public void Dispose()
    {
        foreach (var b in _buffers)
        {
            NativeMemory.AlignedFree((void*)b);
        }

        NativeMemory.AlignedFree(_output);
    }
}
