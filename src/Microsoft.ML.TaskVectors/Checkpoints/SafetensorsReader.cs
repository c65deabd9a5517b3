using System.Text;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Checkpoints;

/// <summary>
/// Reads one safetensors file. Opening parses and validates only the header; each tensor is read
/// with positioned reads when asked for, so memory is spent only on the tensors used.
/// </summary>
/// <remarks>
/// Validation follows the format's rules: header at most 100 MB of UTF-8 JSON; every entry has a
/// known dtype, a non-negative shape and offsets whose span equals shape × dtype size; the data
/// regions, sorted, start at 0, neither overlap nor leave gaps, and end exactly at the end of the file.
/// </remarks>
public sealed class SafetensorsReader : Checkpoint
{
    /// <summary>Largest header accepted, as in the reference implementation.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private readonly SafeFileHandle _handle;
    private readonly Dictionary<string, long> _offsets;
    private readonly long _dataStart;
    private readonly TensorInfo[] _tensors;
    private readonly Dictionary<string, string> _metadata;

    private SafetensorsReader(string path, SafeFileHandle handle, long dataStart, TensorInfo[] tensors,
        Dictionary<string, long> offsets, Dictionary<string, string> metadata)
    {
        Location = path;
        _handle = handle;
        _dataStart = dataStart;
        _tensors = tensors;
        _offsets = offsets;
        _metadata = metadata;
    }

    /// <inheritdoc />
    public override string Location { get; }

    /// <inheritdoc />
    public override IReadOnlyList<TensorInfo> Tensors => _tensors;

    /// <inheritdoc />
    public override IReadOnlyDictionary<string, string> Metadata => _metadata;

    /// <summary>Opens and validates <paramref name="path"/>.</summary>
    /// <exception cref="CheckpointFormatException">The file is not a valid safetensors file; the message says why.</exception>
    public static new SafetensorsReader Open(string path)
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("safetensors data is little-endian; big-endian hosts are not supported.");
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        try
        {
            long fileLength = RandomAccess.GetLength(handle);
            if (fileLength < 8)
                throw new CheckpointFormatException(path, $"file is {fileLength} bytes, too short for a safetensors header (8-byte length prefix).");
            Span<byte> prefix = stackalloc byte[8];
            ReadExactly(handle, prefix, 0, path);
            ulong headerLength = BitConverter.ToUInt64(prefix);
            if (headerLength > MaxHeaderBytes)
                throw new CheckpointFormatException(path, $"header length {headerLength} bytes exceeds the limit of {MaxHeaderBytes} bytes.");
            if ((long)headerLength > fileLength - 8)
                throw new CheckpointFormatException(path, $"truncated: header length {headerLength} bytes but the file has only {fileLength - 8} bytes after the prefix.");
            var header = new byte[headerLength];
            ReadExactly(handle, header, 8, path);
            long dataStart = 8 + (long)headerLength;
            var (tensors, offsets, metadata) = ParseHeader(path, header, fileLength - dataStart);
            return new SafetensorsReader(path, handle, dataStart, tensors, offsets, metadata);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static (TensorInfo[], Dictionary<string, long>, Dictionary<string, string>) ParseHeader(string path, byte[] header, long dataLength)
    {
        JsonDocument doc;
        try
        {
            var text = new UTF8Encoding(false, true).GetString(header);
            doc = JsonDocument.Parse(text);
        }
        catch (Exception e) when (e is JsonException or DecoderFallbackException)
        {
            throw new CheckpointFormatException(path, $"header is not valid UTF-8 JSON: {e.Message}", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new CheckpointFormatException(path, "header must be a JSON object.");
            var entries = new List<(TensorInfo Info, long Begin, long End)>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object)
                        throw new CheckpointFormatException(path, "__metadata__ must be an object of strings.");
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String)
                            throw new CheckpointFormatException(path, $"__metadata__ entry '{m.Name}' must be a string.");
                        metadata[m.Name] = m.Value.GetString()!;
                    }
                    continue;
                }
                entries.Add(ParseEntry(path, prop));
            }

            entries.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
            long expected = 0;
            string? previous = null;
            foreach (var (info, begin, end) in entries)
            {
                if (begin < expected)
                    throw new CheckpointFormatException(path, $"tensor '{info.Name}' data [{begin}, {end}) overlaps tensor '{previous}' (which ends at {expected}).");
                if (begin > expected)
                    throw new CheckpointFormatException(path, $"tensor '{info.Name}' data starts at {begin}, leaving a gap after offset {expected}; data must be contiguous.");
                expected = end;
                previous = info.Name;
            }
            if (expected > dataLength)
                throw new CheckpointFormatException(path, $"truncated: the header describes {expected} bytes of tensor data but the file holds {dataLength}.");
            if (expected < dataLength)
                throw new CheckpointFormatException(path, $"file size mismatch: the header describes {expected} bytes of tensor data but the file holds {dataLength}.");

            var offsets = entries.ToDictionary(e => e.Info.Name, e => e.Begin, StringComparer.Ordinal);
            var tensors = entries.Select(e => e.Info).OrderBy(t => t.Name, StringComparer.Ordinal).ToArray();
            return (tensors, offsets, metadata);
        }
    }

    private static (TensorInfo, long, long) ParseEntry(string path, JsonProperty prop)
    {
        var name = prop.Name;
        var v = prop.Value;
        if (v.ValueKind != JsonValueKind.Object)
            throw new CheckpointFormatException(path, $"tensor '{name}': entry must be an object with dtype, shape and data_offsets.");
        if (!v.TryGetProperty("dtype", out var dtypeEl) || dtypeEl.ValueKind != JsonValueKind.String)
            throw new CheckpointFormatException(path, $"tensor '{name}': missing string 'dtype'.");
        var dtypeName = dtypeEl.GetString()!;
        if (!TensorDTypeExtensions.TryParseSafetensorsName(dtypeName, out var dtype))
            throw new CheckpointFormatException(path, $"tensor '{name}': unknown dtype '{dtypeName}' (supported: BOOL, U8, I8, I16, U16, I32, U32, I64, U64, F16, BF16, F32, F64).");
        if (!v.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array)
            throw new CheckpointFormatException(path, $"tensor '{name}': missing array 'shape'.");
        var shape = new long[shapeEl.GetArrayLength()];
        int i = 0;
        foreach (var d in shapeEl.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var dim) || dim < 0)
                throw new CheckpointFormatException(path, $"tensor '{name}': shape entries must be non-negative integers.");
            shape[i++] = dim;
        }
        if (!v.TryGetProperty("data_offsets", out var offEl) || offEl.ValueKind != JsonValueKind.Array || offEl.GetArrayLength() != 2
            || !offEl[0].TryGetInt64(out var begin) || !offEl[1].TryGetInt64(out var end) || begin < 0 || end < begin)
            throw new CheckpointFormatException(path, $"tensor '{name}': data_offsets must be [begin, end] with 0 <= begin <= end.");
        var info = new TensorInfo(name, dtype, shape);
        long bytes;
        try { bytes = info.ByteLength; }
        catch (OverflowException) { throw new CheckpointFormatException(path, $"tensor '{name}': shape {info.ShapeText} is too large."); }
        if (end - begin != bytes)
            throw new CheckpointFormatException(path,
                $"tensor '{name}': data_offsets span {end - begin} bytes but shape {info.ShapeText} × {dtype.ToSafetensorsName()} needs {bytes}.");
        return (info, begin, end);
    }

    /// <summary>Reads the raw little-endian bytes of a tensor into <paramref name="destination"/>.</summary>
    /// <exception cref="ArgumentException">The destination length differs from the tensor's byte length.</exception>
    public void ReadBytes(string name, Span<byte> destination)
    {
        var info = GetInfo(name);
        if (destination.Length != info.ByteLength)
            throw new ArgumentException($"{Location}: tensor '{name}' has {info.ByteLength} bytes; the destination holds {destination.Length}.", nameof(destination));
        ReadExactly(_handle, destination, _dataStart + _offsets[name], Location);
    }

    /// <summary>
    /// Reads part of a tensor's raw bytes: <paramref name="destination"/>.Length bytes from
    /// <paramref name="byteOffset"/> within the tensor.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is not within the tensor's bytes.</exception>
    public void ReadBytes(string name, long byteOffset, Span<byte> destination)
    {
        var info = GetInfo(name);
        if (byteOffset < 0 || byteOffset + destination.Length > info.ByteLength)
            throw new ArgumentOutOfRangeException(nameof(byteOffset),
                $"{Location}: bytes [{byteOffset}, {byteOffset + destination.Length}) are not within tensor '{name}''s {info.ByteLength}.");
        ReadExactly(_handle, destination, _dataStart + _offsets[name] + byteOffset, Location);
    }

    /// <inheritdoc />
    protected override Tensor ReadCore(TensorInfo info)
    {
        var type = info.DType.ToScalarType()
            ?? throw new NotSupportedException($"{Location}: tensor '{info.Name}' has dtype {info.DType.ToSafetensorsName()}, which TorchSharp cannot hold; use ReadBytes.");
        var tensor = empty(info.Shape, type);
        try
        {
            TensorBytes.ForEachChunk(tensor, (span, offset) => ReadExactly(_handle, span, _dataStart + _offsets[info.Name] + offset, Location));
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    private static void ReadExactly(SafeFileHandle handle, Span<byte> buffer, long offset, string path)
    {
        while (!buffer.IsEmpty)
        {
            int n = RandomAccess.Read(handle, buffer, offset);
            if (n == 0)
                throw new CheckpointFormatException(path, $"truncated: unexpected end of file at offset {offset}.");
            buffer = buffer[n..];
            offset += n;
        }
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) _handle.Dispose();
    }
}
