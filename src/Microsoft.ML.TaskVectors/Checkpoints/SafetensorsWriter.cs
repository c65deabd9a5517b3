using System.Text.Json;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Checkpoints;

/// <summary>
/// Writes a safetensors file tensor by tensor. The tensors are declared up front (the header comes
/// first), then written in that order; nothing is kept in memory between writes. The file appears
/// at its path only when <see cref="Commit"/> succeeds.
/// </summary>
/// <remarks>
/// Alternatively the whole file is written in parts with <see cref="WriteBytesAt"/>, in any order
/// and from several threads at once.
/// </remarks>
public sealed class SafetensorsWriter : IDisposable
{
    private readonly AtomicFile _file;
    private readonly TensorInfo[] _tensors;
    private readonly long _dataStart;
    private int _next;
    private Dictionary<string, (long Offset, int Index)>? _places;
    private long[]? _partBytes;
    private readonly object _gate = new();

    private SafetensorsWriter(AtomicFile file, TensorInfo[] tensors, long dataStart)
    {
        _file = file;
        _tensors = tensors;
        _dataStart = dataStart;
    }

    /// <summary>The tensors still to be written, in order.</summary>
    public IEnumerable<TensorInfo> Remaining => _tensors.Skip(_next);

    /// <summary>Declares the tensors and writes the header; the file is reserved at its final size up front.</summary>
    /// <exception cref="ArgumentException">A name is repeated or empty, or a dtype has no safetensors name.</exception>
    public static SafetensorsWriter Create(string path, IEnumerable<TensorInfo> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToArray();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in list)
        {
            if (string.IsNullOrEmpty(t.Name) || t.Name == "__metadata__")
                throw new ArgumentException($"{path}: '{t.Name}' cannot be used as a tensor name.", nameof(tensors));
            if (!seen.Add(t.Name))
                throw new ArgumentException($"{path}: tensor '{t.Name}' is declared twice.", nameof(tensors));
        }
        var header = BuildHeader(list, metadata);
        long dataStart = 8 + header.Length;
        var file = AtomicFile.Create(path, dataStart + list.Sum(t => t.ByteLength));
        try
        {
            Span<byte> prefix = stackalloc byte[8];
            BitConverter.TryWriteBytes(prefix, (ulong)header.Length);
            file.Stream.Write(prefix);
            file.Stream.Write(header);
            return new SafetensorsWriter(file, list, dataStart);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static byte[] BuildHeader(TensorInfo[] tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        using var ms = new MemoryStream();
        using (var json = new Utf8JsonWriter(ms))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal)) json.WriteString(k, v);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var t in tensors)
            {
                json.WriteStartObject(t.Name);
                json.WriteString("dtype", t.DType.ToSafetensorsName());
                json.WriteStartArray("shape");
                foreach (var d in t.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                offset += t.ByteLength;
                json.WriteNumberValue(offset);
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        // Pad with spaces so tensor data starts 8-byte aligned, as the reference writer does.
        int padded = (int)((ms.Length + 8 + 7) / 8 * 8 - 8);
        while (ms.Length < padded) ms.WriteByte((byte)' ');
        return ms.ToArray();
    }

    private TensorInfo Expect(string name)
    {
        if (_places is not null)
            throw new InvalidOperationException($"{_file.Path}: the file is being written in parts (WriteBytesAt); '{name}' cannot be written whole.");
        if (_next >= _tensors.Length)
            throw new InvalidOperationException($"{_file.Path}: all {_tensors.Length} declared tensors are already written; '{name}' was not declared.");
        var info = _tensors[_next];
        if (info.Name != name)
            throw new InvalidOperationException($"{_file.Path}: expected tensor '{info.Name}' next (declaration order), got '{name}'.");
        return info;
    }

    /// <summary>
    /// Writes the next declared tensor. Floating-point tensors are converted to the declared dtype;
    /// the shape must match the declaration.
    /// </summary>
    public void Write(string name, Tensor tensor)
    {
        var info = Expect(name);
        if (!tensor.shape.AsSpan().SequenceEqual(info.Shape))
            throw new ArgumentException($"{_file.Path}: tensor '{name}' was declared {info.ShapeText} but has shape [{string.Join(", ", tensor.shape)}].", nameof(tensor));
        var type = info.DType.ToScalarType()
            ?? throw new NotSupportedException($"{_file.Path}: tensor '{name}' has dtype {info.DType.ToSafetensorsName()}; write it with WriteBytes.");
        if (tensor.dtype != type && !(tensor.is_floating_point() && info.DType.IsFloatingPoint()))
            throw new ArgumentException($"{_file.Path}: tensor '{name}' was declared {info.DType.ToSafetensorsName()} but is {tensor.dtype}.", nameof(tensor));
        using var scope = NewDisposeScope();
        var data = tensor.to(type, CPU).contiguous();
        TensorBytes.ForEachChunk(data, (span, _) => _file.Stream.Write(span));
        _next++;
    }

    /// <summary>Writes the next declared tensor from raw little-endian bytes.</summary>
    public void WriteBytes(string name, ReadOnlySpan<byte> data)
    {
        var info = Expect(name);
        if (data.Length != info.ByteLength)
            throw new ArgumentException($"{_file.Path}: tensor '{name}' needs {info.ByteLength} bytes, got {data.Length}.", nameof(data));
        _file.Stream.Write(data);
        _next++;
    }

    /// <summary>
    /// Writes <paramref name="data"/> as the bytes of declared tensor <paramref name="name"/> from
    /// <paramref name="byteOffset"/> on, straight to its place in the file. Parts may come in any
    /// order and from several threads at once, but then every tensor must be written this way, its
    /// parts covering it exactly once; <see cref="Commit"/> checks that each got its byte count.
    /// </summary>
    public void WriteBytesAt(string name, long byteOffset, ReadOnlySpan<byte> data) => WriteAt(name, byteOffset, data, count: true);

    /// <summary>
    /// Writes over part of a tensor already written with <see cref="WriteBytesAt"/> (a correction:
    /// not counted towards the tensor's bytes).
    /// </summary>
    public void OverwriteBytesAt(string name, long byteOffset, ReadOnlySpan<byte> data) => WriteAt(name, byteOffset, data, count: false);

    private void WriteAt(string name, long byteOffset, ReadOnlySpan<byte> data, bool count)
    {
        var places = _places ?? StartParts();
        if (!places.TryGetValue(name, out var place))
            throw new ArgumentException($"{_file.Path}: tensor '{name}' was not declared.", nameof(name));
        var info = _tensors[place.Index];
        if (byteOffset < 0 || byteOffset + data.Length > info.ByteLength)
            throw new ArgumentOutOfRangeException(nameof(byteOffset), $"{_file.Path}: bytes [{byteOffset}, {byteOffset + data.Length}) are not within tensor '{name}''s {info.ByteLength}.");
        RandomAccess.Write(_file.Stream.SafeFileHandle, data, _dataStart + place.Offset + byteOffset);
        if (count)
            Interlocked.Add(ref _partBytes![place.Index], data.Length);
    }

    private Dictionary<string, (long Offset, int Index)> StartParts()
    {
        lock (_gate)
        {
            if (_places is null)
            {
                if (_next > 0)
                    throw new InvalidOperationException($"{_file.Path}: tensors were written whole; the rest cannot be written in parts.");
                _file.Stream.Flush(); // the header, before writes that bypass the stream
                var places = new Dictionary<string, (long, int)>(StringComparer.Ordinal);
                long offset = 0;
                for (int i = 0; i < _tensors.Length; i++)
                {
                    places[_tensors[i].Name] = (offset, i);
                    offset += _tensors[i].ByteLength;
                }
                _partBytes = new long[_tensors.Length];
                _places = places;
            }
            return _places;
        }
    }

    /// <summary>Finishes the file and moves it into place.</summary>
    /// <exception cref="InvalidOperationException">Some declared tensors were not written.</exception>
    public void Commit()
    {
        if (_partBytes is not null)
        {
            for (int i = 0; i < _tensors.Length; i++)
                if (_partBytes[i] != _tensors[i].ByteLength)
                    throw new InvalidOperationException($"{_file.Path}: tensor '{_tensors[i].Name}' got {_partBytes[i]} of its {_tensors[i].ByteLength} bytes.");
            _file.Commit();
            return;
        }
        if (_next != _tensors.Length)
            throw new InvalidOperationException($"{_file.Path}: {_tensors.Length - _next} declared tensors were not written (next: '{_tensors[_next].Name}').");
        _file.Commit();
    }

    /// <summary>Discards the file unless committed.</summary>
    public void Dispose() => _file.Dispose();

    /// <summary>Writes named tensors to a new file, keeping each tensor's element type.</summary>
    public static void Save(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var names = tensors.Keys.OrderBy(n => n, StringComparer.Ordinal).ToArray();
        using var writer = Create(path, names.Select(n => new TensorInfo(n, TensorDTypeExtensions.FromScalarType(tensors[n].dtype), tensors[n].shape)), metadata);
        foreach (var n in names) writer.Write(n, tensors[n]);
        writer.Commit();
    }

    /// <summary>
    /// Streams every tensor of <paramref name="source"/> into a new file, one tensor in memory at a time.
    /// </summary>
    /// <param name="source">What to write (a file, a merged view, …).</param>
    /// <param name="path">The destination.</param>
    /// <param name="metadata">Metadata to store; the source's when null.</param>
    /// <param name="progress">Receives the fraction of bytes written.</param>
    /// <param name="cancellationToken">Stops between tensors; the destination is then left untouched.</param>
    public static void Save(Checkpoint source, string path, IReadOnlyDictionary<string, string>? metadata = null,
        IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        var infos = source.Tensors;
        using var writer = Create(path, infos, metadata ?? source.Metadata);
        double total = Math.Max(1, infos.Sum(t => (double)t.ByteLength)), done = 0;
        foreach (var info in infos)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using (var t = source.Read(info.Name)) writer.Write(info.Name, t);
            done += info.ByteLength;
            progress?.Report(done / total);
        }
        writer.Commit();
    }
}
