using Microsoft.ML.TaskVectors.Checkpoints;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.TaskVectors;

/// <summary>
/// One task vector τ = θ_finetuned − θ_base, read tensor by tensor: either computed on demand from
/// two checkpoints or read from a stored τ file. Nothing is held in memory between reads.
/// </summary>
public sealed class TaskVector : IDisposable
{
    private readonly Checkpoint? _base;
    private readonly Checkpoint _source;
    private readonly bool _ownsCheckpoints;
    private readonly Dictionary<string, TensorInfo> _byName;

    private TaskVector(string name, Checkpoint? @base, Checkpoint source, TensorInfo[] tensors, bool ownsCheckpoints)
    {
        Name = name;
        _base = @base;
        _source = source;
        _ownsCheckpoints = ownsCheckpoints;
        Tensors = tensors;
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>A display name (by default the fine-tuned checkpoint's or τ file's name).</summary>
    public string Name { get; }

    /// <summary>The tensors of the task vector, sorted by name; <see cref="TensorInfo.DType"/> is the stored type.</summary>
    public IReadOnlyList<TensorInfo> Tensors { get; }

    /// <summary>Where the task vector comes from.</summary>
    public string Location => _base is null ? _source.Location : $"{_source.Location} − {_base.Location}";

    /// <summary>Total number of entries.</summary>
    public long ParameterCount => Tensors.Sum(t => t.ElementCount);

    /// <summary>
    /// The task vector between two checkpoints over the tensors <paramref name="filter"/> selects
    /// (default: every floating-point tensor). The checkpoints stay owned by the caller.
    /// </summary>
    /// <exception cref="ArgumentException">
    /// The checkpoints disagree: the message lists every selected tensor missing from one side or
    /// whose shape or dtype differs.
    /// </exception>
    public static TaskVector FromCheckpoints(Checkpoint @base, Checkpoint finetuned, TensorFilter? filter = null, string? name = null) =>
        FromCheckpoints(@base, finetuned, filter, name, ownsCheckpoints: false);

    /// <summary>Opens both checkpoints (files or model folders) and builds their task vector; disposing it closes them.</summary>
    public static TaskVector FromFiles(string basePath, string finetunedPath, TensorFilter? filter = null, string? name = null)
    {
        var b = Checkpoint.Open(basePath);
        try
        {
            var f = Checkpoint.Open(finetunedPath);
            try
            {
                return FromCheckpoints(b, f, filter, name ?? NameFromPath(finetunedPath), ownsCheckpoints: true);
            }
            catch
            {
                f.Dispose();
                throw;
            }
        }
        catch
        {
            b.Dispose();
            throw;
        }
    }

    private static TaskVector FromCheckpoints(Checkpoint @base, Checkpoint finetuned, TensorFilter? filter, string? name, bool ownsCheckpoints)
    {
        filter ??= TensorFilter.All;
        var selectedBase = @base.Tensors.Where(filter.Matches).ToArray();
        var selectedFt = finetuned.Tensors.Where(filter.Matches).ToDictionary(t => t.Name, StringComparer.Ordinal);
        var problems = new List<string>();
        foreach (var b in selectedBase)
        {
            if (!finetuned.Contains(b.Name))
                problems.Add($"'{b.Name}' is missing from the fine-tuned checkpoint");
            else
            {
                var f = finetuned.GetInfo(b.Name);
                if (!f.Shape.AsSpan().SequenceEqual(b.Shape))
                    problems.Add($"'{b.Name}' has shape {b.ShapeText} in the base but {f.ShapeText} in the fine-tuned checkpoint");
                else if (f.DType != b.DType)
                    problems.Add($"'{b.Name}' has dtype {b.DType.ToSafetensorsName()} in the base but {f.DType.ToSafetensorsName()} in the fine-tuned checkpoint");
            }
        }
        foreach (var f in selectedFt.Values)
            if (!@base.Contains(f.Name)) problems.Add($"'{f.Name}' is missing from the base checkpoint");
        if (problems.Count > 0)
            throw new ArgumentException(
                $"Cannot build a task vector from base {@base.Location} and fine-tuned {finetuned.Location}: {problems.Count} tensor(s) do not match:\n  "
                + string.Join("\n  ", problems));
        if (selectedBase.Length == 0)
            throw new ArgumentException($"No tensor of {@base.Location} passes the tensor filter (include: {string.Join(", ", filter.Include)}; exclude: {string.Join(", ", filter.Exclude)}).");
        return new TaskVector(name ?? NameFromPath(finetuned.Location), @base, finetuned, selectedBase, ownsCheckpoints);
    }

    /// <summary>Reads a stored task vector (a safetensors file of τ tensors, for example one written by <see cref="Save"/>).</summary>
    public static TaskVector Load(string path, TensorFilter? filter = null, string? name = null)
    {
        var source = Checkpoint.Open(path);
        try
        {
            var tensors = source.Tensors.Where((filter ?? TensorFilter.All).Matches).ToArray();
            if (tensors.Length == 0)
                throw new CheckpointFormatException(path, "holds no floating-point tensor selected as a task vector.");
            return new TaskVector(name ?? NameFromPath(path), null, source, tensors, ownsCheckpoints: true);
        }
        catch
        {
            source.Dispose();
            throw;
        }
    }

    /// <summary>A task name from a path: the file's stem, or the folder's name for a model folder's file.</summary>
    public static string NameFromPath(string path)
    {
        var full = Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar);
        var file = Path.GetFileName(full);
        // A model folder's file (model.safetensors) says nothing: use the folder's name.
        if (file.StartsWith("model.safetensors", StringComparison.Ordinal) || file.StartsWith("open_clip_model", StringComparison.Ordinal))
            return Path.GetFileName(Path.GetDirectoryName(full)!);
        return file.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) ? file[..^".safetensors".Length] : file;
    }

    /// <summary>The base checkpoint when τ is computed from two checkpoints; null for a stored τ.</summary>
    internal Checkpoint? BaseCheckpoint => _base;

    /// <summary>The fine-tuned checkpoint, or the stored τ file.</summary>
    internal Checkpoint SourceCheckpoint => _source;

    /// <summary>True when the task vector has that tensor.</summary>
    public bool Contains(string tensorName) => _byName.ContainsKey(tensorName);

    /// <summary>Description of one tensor.</summary>
    public TensorInfo GetInfo(string tensorName) =>
        _byName.TryGetValue(tensorName, out var info)
            ? info
            : throw new KeyNotFoundException($"Task vector '{Name}' ({Location}) has no tensor '{tensorName}'.");

    /// <summary>Reads one tensor of τ as a new float32 CPU tensor owned by the caller.</summary>
    public Tensor Read(string tensorName)
    {
        GetInfo(tensorName);
        if (_base is null) return _source.ReadFloat32(tensorName);
        using var b = _base.ReadFloat32(tensorName);
        var f = _source.ReadFloat32(tensorName);
        return f.sub_(b);
    }

    /// <summary>
    /// Writes τ to a safetensors file in <paramref name="storage"/> precision (F32, F16 or BF16),
    /// with metadata naming the task and its sources.
    /// </summary>
    public void Save(string path, TensorDType storage = TensorDType.F32, IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        TaskVectorPool.CheckStorage(storage);
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "taskvectors/task-vector",
            ["task"] = Name,
            ["source"] = Location,
        };
        using var view = new StoredView(this, storage);
        SafetensorsWriter.Save(view, path, metadata, progress, cancellationToken);
    }

    /// <summary>The task vector seen as a checkpoint whose floating-point tensors are converted to <c>storage</c>.</summary>
    private sealed class StoredView(TaskVector owner, TensorDType storage) : Checkpoint
    {
        private readonly TensorInfo[] _tensors = owner.Tensors.Select(t => t with { DType = storage }).ToArray();
        public override string Location => owner.Location;
        public override IReadOnlyList<TensorInfo> Tensors => _tensors;
        protected override Tensor ReadCore(TensorInfo info) => owner.Read(info.Name).to(storage.ToScalarType()!.Value, disposeAfter: true);
    }

    /// <summary>Closes the checkpoints this task vector opened.</summary>
    public void Dispose()
    {
        if (!_ownsCheckpoints) return;
        _source.Dispose();
        _base?.Dispose();
    }

    /// <inheritdoc />
    public override string ToString() => $"{Name} ({Tensors.Count} tensors, {ParameterCount:N0} parameters)";
}
