using System.Text.Json;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Checkpoints;

/// <summary>
/// A Hugging Face sharded checkpoint: <c>model.safetensors.index.json</c>, whose <c>weight_map</c>
/// names the shard holding each tensor, beside the shard files.
/// </summary>
public sealed class ShardedCheckpoint : Checkpoint
{
    private readonly SafetensorsReader[] _shards;
    private readonly Dictionary<string, SafetensorsReader> _owner;
    private readonly TensorInfo[] _tensors;
    private readonly Dictionary<string, string> _metadata;

    private ShardedCheckpoint(string indexPath, SafetensorsReader[] shards, Dictionary<string, SafetensorsReader> owner, Dictionary<string, string> metadata)
    {
        Location = indexPath;
        _shards = shards;
        _owner = owner;
        _metadata = metadata;
        _tensors = owner.Select(kv => kv.Value.GetInfo(kv.Key)).OrderBy(t => t.Name, StringComparer.Ordinal).ToArray();
    }

    /// <inheritdoc />
    public override string Location { get; }

    /// <inheritdoc />
    public override IReadOnlyList<TensorInfo> Tensors => _tensors;

    /// <inheritdoc />
    public override IReadOnlyDictionary<string, string> Metadata => _metadata;

    /// <summary>The shard files, in the order the index first names them.</summary>
    public IReadOnlyList<string> ShardPaths => _shards.Select(s => s.Location).ToArray();

    /// <summary>Opens the index and every shard it names, checking each listed tensor is in its shard.</summary>
    /// <exception cref="CheckpointFormatException">The index is malformed, a shard is missing, or a tensor is not where the index says.</exception>
    public static new ShardedCheckpoint Open(string indexPath)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;
        Dictionary<string, string> weightMap;
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(indexPath));
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new CheckpointFormatException(indexPath, "missing object 'weight_map' (tensor name → shard file).");
            weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new CheckpointFormatException(indexPath, $"weight_map entry '{p.Name}' must name a shard file.");
                weightMap[p.Name] = p.Value.GetString()!;
            }
            if (doc.RootElement.TryGetProperty("metadata", out var meta) && meta.ValueKind == JsonValueKind.Object)
                foreach (var p in meta.EnumerateObject()) metadata[p.Name] = p.Value.ToString();
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(indexPath, $"not valid JSON: {e.Message}", e);
        }

        var shards = new Dictionary<string, SafetensorsReader>(StringComparer.Ordinal);
        try
        {
            var owner = new Dictionary<string, SafetensorsReader>(StringComparer.Ordinal);
            foreach (var (name, shardFile) in weightMap)
            {
                if (shardFile.Contains('/') || shardFile.Contains('\\') || shardFile.Contains(".."))
                    throw new CheckpointFormatException(indexPath, $"weight_map entry '{name}' names '{shardFile}'; shards must sit beside the index.");
                if (!shards.TryGetValue(shardFile, out var reader))
                {
                    var shardPath = Path.Combine(dir, shardFile);
                    if (!File.Exists(shardPath))
                        throw new CheckpointFormatException(indexPath, $"shard '{shardFile}' (holding '{name}') does not exist.");
                    shards[shardFile] = reader = SafetensorsReader.Open(shardPath);
                }
                if (!reader.Contains(name))
                    throw new CheckpointFormatException(indexPath, $"tensor '{name}' is mapped to shard '{shardFile}', which does not contain it.");
                owner[name] = reader;
            }
            return new ShardedCheckpoint(indexPath, shards.Values.ToArray(), owner, metadata);
        }
        catch
        {
            foreach (var s in shards.Values) s.Dispose();
            throw;
        }
    }

    /// <summary>The shard file holding tensor <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">The checkpoint has no such tensor.</exception>
    public SafetensorsReader ShardOf(string name) =>
        _owner.TryGetValue(name, out var shard) ? shard : throw new KeyNotFoundException($"{Location}: no tensor '{name}'.");

    /// <inheritdoc />
    protected override Tensor ReadCore(TensorInfo info) => _owner[info.Name].Read(info.Name);

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (!disposing) return;
        foreach (var s in _shards) s.Dispose();
    }
}
