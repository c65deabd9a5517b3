using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Checkpoints;

/// <summary>
/// A read-only set of named tensors: one safetensors file, a sharded Hugging Face checkpoint, or a
/// view computed on demand (a merged model). Tensors are read one at a time, so opening a large
/// checkpoint costs memory only for the tensors actually used.
/// </summary>
public abstract class Checkpoint : IDisposable
{
    private Dictionary<string, TensorInfo>? _byName;

    /// <summary>Where the checkpoint comes from (a path, or a description of a computed view).</summary>
    public abstract string Location { get; }

    /// <summary>Every tensor, sorted by name (ordinal).</summary>
    public abstract IReadOnlyList<TensorInfo> Tensors { get; }

    /// <summary>Free-form string metadata (safetensors <c>__metadata__</c>); empty when absent.</summary>
    public virtual IReadOnlyDictionary<string, string> Metadata => EmptyMetadata;

    /// <summary>An empty metadata dictionary.</summary>
    protected static IReadOnlyDictionary<string, string> EmptyMetadata { get; } = new Dictionary<string, string>();

    private Dictionary<string, TensorInfo> ByName => _byName ??= Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);

    /// <summary>True when the checkpoint holds a tensor of that name.</summary>
    public bool Contains(string name) => ByName.ContainsKey(name);

    /// <summary>The description of the named tensor.</summary>
    /// <exception cref="KeyNotFoundException">No such tensor; the message names the checkpoint.</exception>
    public TensorInfo GetInfo(string name) =>
        ByName.TryGetValue(name, out var info)
            ? info
            : throw new KeyNotFoundException($"{Location}: no tensor named '{name}' (the checkpoint has {Tensors.Count} tensors).");

    /// <summary>Reads the named tensor as a new CPU tensor in its stored element type.</summary>
    public Tensor Read(string name) => ReadCore(GetInfo(name));

    /// <summary>
    /// Reads a floating-point tensor as a new float32 CPU tensor (F16, BF16 and F64 are converted).
    /// </summary>
    /// <exception cref="InvalidOperationException">The tensor is not floating point.</exception>
    public Tensor ReadFloat32(string name)
    {
        var info = GetInfo(name);
        if (!info.DType.IsFloatingPoint())
            throw new InvalidOperationException($"{Location}: tensor '{name}' has dtype {info.DType.ToSafetensorsName()}; a floating-point tensor (F16, BF16, F32, F64) was expected.");
        var t = ReadCore(info);
        return info.DType == TensorDType.F32 ? t : t.to(ScalarType.Float32, disposeAfter: true);
    }

    /// <summary>Reads one tensor described by <paramref name="info"/> (which this checkpoint holds).</summary>
    protected abstract Tensor ReadCore(TensorInfo info);

    /// <summary>
    /// Opens a checkpoint: a <c>.safetensors</c> file, a sharded index (<c>*.safetensors.index.json</c>),
    /// or a model folder holding <c>model.safetensors</c>, <c>model.safetensors.index.json</c> or
    /// <c>open_clip_model.safetensors</c>.
    /// </summary>
    /// <exception cref="FileNotFoundException">Nothing loadable at <paramref name="path"/>.</exception>
    /// <exception cref="CheckpointFormatException">A file is malformed.</exception>
    public static Checkpoint Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Directory.Exists(path))
        {
            foreach (var candidate in new[] { "model.safetensors.index.json", "model.safetensors", "open_clip_model.safetensors" })
            {
                var p = System.IO.Path.Combine(path, candidate);
                if (File.Exists(p)) return Open(p);
            }
            throw new FileNotFoundException(
                $"{path}: no checkpoint in this folder; expected model.safetensors, model.safetensors.index.json (sharded) or open_clip_model.safetensors.", path);
        }
        if (!File.Exists(path))
            throw new FileNotFoundException($"{path}: no such file or folder.", path);
        return path.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase)
            ? ShardedCheckpoint.Open(path)
            : SafetensorsReader.Open(path);
    }

    /// <summary>Releases open files.</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases resources held by the implementation.</summary>
    protected virtual void Dispose(bool disposing) { }

    /// <inheritdoc />
    public override string ToString() => Location;
}
