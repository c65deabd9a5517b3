using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.TaskVectors.Checkpoints;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>A file the state depends on, with the SHA-256 of its content when it was saved.</summary>
/// <param name="Path">Absolute path.</param>
/// <param name="Sha256">Lower-case hex digest.</param>
public sealed record FileReference(string Path, string Sha256)
{
    /// <summary>References <paramref name="path"/> by its current content.</summary>
    public static FileReference Of(string path)
    {
        var full = System.IO.Path.GetFullPath(path);
        if (Directory.Exists(full))
        {
            // A model folder: its checkpoint files, in name order, hashed together.
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            foreach (var file in Directory.EnumerateFiles(full, "*.safetensors").Order(StringComparer.Ordinal))
                Append(sha, file);
            return new FileReference(full, Convert.ToHexStringLower(sha.GetHashAndReset()));
        }
        if (!File.Exists(full)) throw new FileNotFoundException($"{full}: no such file or folder.", full);
        using var one = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Append(one, full);
        return new FileReference(full, Convert.ToHexStringLower(one.GetHashAndReset()));
    }

    /// <summary>Throws unless the file still has the content it had when referenced.</summary>
    /// <exception cref="InvalidDataException">The file is missing or changed; the message names it.</exception>
    public void Verify()
    {
        if (!File.Exists(Path) && !Directory.Exists(Path))
            throw new InvalidDataException($"{Path}: the trained state refers to this file, which no longer exists.");
        if (Of(Path).Sha256 != Sha256)
            throw new InvalidDataException($"{Path}: the file changed since the state was trained (SHA-256 differs); retrain or restore it.");
    }

    private static void Append(IncrementalHash sha, string file)
    {
        using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        var buffer = new byte[1 << 20];
        int read;
        while ((read = stream.Read(buffer)) > 0) sha.AppendData(buffer, 0, read);
    }
}

/// <summary>
/// A trained composition in the project's own format: <c>state.json</c> (method, options, tasks,
/// references to θ0, the task vectors and the heads by path and content hash) and
/// <c>state.safetensors</c> (learned tensors: coefficients, network and gate parameters, running
/// statistics). Loading then scoring gives the predictions the trainer's model gave.
/// </summary>
public sealed class CompositionState : IDisposable
{
    /// <summary>The manifest's file name.</summary>
    public const string ManifestFile = "state.json";

    /// <summary>The tensors' file name.</summary>
    public const string TensorsFile = "state.safetensors";

    /// <summary>Version of the format written.</summary>
    public const int FormatVersion = 1;

    /// <summary>Creates a state from its parts (the tensors are copied to the CPU).</summary>
    public CompositionState(string method, JsonObject options, IReadOnlyList<string> taskNames, FileReference baseModel,
        IReadOnlyList<FileReference> taskVectors, IReadOnlyList<FileReference?> heads, IReadOnlyDictionary<string, Tensor> tensors)
    {
        if (taskVectors.Count != taskNames.Count || heads.Count != taskNames.Count)
            throw new ArgumentException($"{taskNames.Count} task names need as many task vectors ({taskVectors.Count}) and heads ({heads.Count}).");
        Method = method;
        Options = options;
        TaskNames = taskNames.ToArray();
        BaseModel = baseModel;
        TaskVectors = taskVectors.ToArray();
        Heads = heads.ToArray();
        Tensors = tensors.ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu().clone().DetachFromDisposeScope(), StringComparer.Ordinal);
    }

    /// <summary>The trainer's name (<c>atlas</c>, <c>vtvc</c>, …).</summary>
    public string Method { get; }

    /// <summary>The trainer's options as JSON.</summary>
    public JsonObject Options { get; }

    /// <summary>Task names, in coefficient order.</summary>
    public IReadOnlyList<string> TaskNames { get; }

    /// <summary>The pre-trained model θ0.</summary>
    public FileReference BaseModel { get; }

    /// <summary>One task vector per task.</summary>
    public IReadOnlyList<FileReference> TaskVectors { get; }

    /// <summary>One head file per task (null when the head is built from the model, e.g. zero-shot).</summary>
    public IReadOnlyList<FileReference?> Heads { get; }

    /// <summary>The learned tensors by name.</summary>
    public IReadOnlyDictionary<string, Tensor> Tensors { get; }

    /// <summary>Writes the state into <paramref name="directory"/> (created if needed); each file atomically, the manifest last.</summary>
    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        SafetensorsWriter.Save(Path.Combine(directory, TensorsFile), Tensors);
        var manifest = new JsonObject
        {
            ["format"] = "taskvectors-composition-state",
            ["version"] = FormatVersion,
            ["method"] = Method,
            ["options"] = Options.DeepClone(),
            ["tasks"] = new JsonArray(TaskNames.Select((name, t) => (JsonNode)new JsonObject
            {
                ["name"] = name,
                ["task_vector"] = Reference(TaskVectors[t]),
                ["head"] = Heads[t] is { } h ? Reference(h) : null,
            }).ToArray()),
            ["base_model"] = Reference(BaseModel),
        };
        AtomicFile.WriteAllText(Path.Combine(directory, ManifestFile), manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>Reads a state written by <see cref="Save"/>.</summary>
    /// <exception cref="FileNotFoundException">A file of the state is missing.</exception>
    /// <exception cref="InvalidDataException">The manifest is malformed; the message names the file and key.</exception>
    public static CompositionState Load(string directory)
    {
        var manifestPath = Path.Combine(directory, ManifestFile);
        if (!File.Exists(manifestPath)) throw new FileNotFoundException($"{directory}: not a trained state (no {ManifestFile}).", manifestPath);
        JsonObject root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(manifestPath)) as JsonObject ?? throw new InvalidDataException($"{manifestPath}: a JSON object was expected.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{manifestPath}: not valid JSON ({e.Message}).", e);
        }
        string Text(JsonNode? node, string key) =>
            (node as JsonValue)?.TryGetValue(out string? s) == true && s is not null ? s : throw new InvalidDataException($"{manifestPath}: '{key}' is missing or not a string.");
        FileReference Ref(JsonNode? node, string key) =>
            node is JsonObject o ? new FileReference(Text(o["path"], key + ".path"), Text(o["sha256"], key + ".sha256")) : throw new InvalidDataException($"{manifestPath}: '{key}' is missing.");
        if (root["version"]?.GetValue<int>() is not FormatVersion)
            throw new InvalidDataException($"{manifestPath}: format version {root["version"]} is not supported (this library reads version {FormatVersion}).");
        var tasks = root["tasks"] as JsonArray ?? throw new InvalidDataException($"{manifestPath}: 'tasks' is missing.");
        var names = tasks.Select((t, i) => Text(t?["name"], $"tasks[{i}].name")).ToArray();
        var vectors = tasks.Select((t, i) => Ref(t?["task_vector"], $"tasks[{i}].task_vector")).ToArray();
        var heads = tasks.Select((t, i) => t?["head"] is null ? null : Ref(t["head"], $"tasks[{i}].head")).ToArray();
        var method = Text(root["method"], "method");
        var baseModel = Ref(root["base_model"], "base_model");
        using var checkpoint = Checkpoint.Open(Path.Combine(directory, TensorsFile));
        var tensors = checkpoint.Tensors.ToDictionary(info => info.Name, info => checkpoint.Read(info.Name), StringComparer.Ordinal);
        try
        {
            return new CompositionState(method, root["options"] as JsonObject ?? new JsonObject(), names, baseModel, vectors, heads, tensors);
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    /// <summary>Checks that θ0, the task vectors and the head files are unchanged.</summary>
    public void VerifyReferences()
    {
        BaseModel.Verify();
        foreach (var r in TaskVectors) r.Verify();
        foreach (var h in Heads) h?.Verify();
    }

    private static JsonObject Reference(FileReference r) => new() { ["path"] = r.Path, ["sha256"] = r.Sha256 };

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var t in Tensors.Values) t.Dispose();
    }
}
