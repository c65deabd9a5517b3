using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.ML.TaskVectors.Checkpoints;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Heads;

/// <summary>Reading and validating head files; the format is described on <see cref="ClassificationHead"/>.</summary>
internal static class HeadFile
{
    // Relaxed escaping keeps non-ASCII class names readable in the header; the JSON stays valid.
    private static readonly JsonSerializerOptions s_json = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static string ToJson(IReadOnlyList<string> values) => JsonSerializer.Serialize(values, s_json);

    /// <summary>Why these class names cannot name <paramref name="expected"/> classes (any number when negative), or null when they can.</summary>
    public static string? ClassNamesProblem(IReadOnlyList<string?> names, long expected)
    {
        if (names.Count == 0) return "At least one class name is needed.";
        if (expected >= 0 && names.Count != expected)
            return $"{names.Count} class names were given for {expected} classes; one name per class is needed.";
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < names.Count; i++)
        {
            if (string.IsNullOrWhiteSpace(names[i])) return $"Class name {i} is null or blank.";
            if (!seen.Add(names[i]!)) return $"Class name '{names[i]}' appears twice (again at index {i}); class names must be unique.";
        }
        return null;
    }

    public static ClassificationHead Load(string path, Device? device)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
            throw new FileNotFoundException($"{path}: no such file; a classification head (.safetensors) was expected.", path);
        ClassificationHead head;
        using (var reader = SafetensorsReader.Open(path))
        using (var scope = NewDisposeScope())
        {
            head = Read(reader, path);
        }
        try
        {
            return device is null ? head : head.To(device);
        }
        catch
        {
            head.Dispose();
            throw;
        }
    }

    private static ClassificationHead Read(SafetensorsReader reader, string path)
    {
        var metadata = reader.Metadata;
        if (!metadata.TryGetValue(ClassificationHead.KindKey, out var kindText))
            throw Bad(path, $"metadata '{ClassificationHead.KindKey}' is missing; a classification head file (kind = linear or zeroshot) was expected.");
        ClassificationHeadKind kind = kindText.Trim().ToLowerInvariant() switch
        {
            "linear" => ClassificationHeadKind.Linear,
            "zeroshot" => ClassificationHeadKind.ZeroShot,
            _ => throw Bad(path, $"metadata '{ClassificationHead.KindKey}' is '{kindText}'; 'linear' or 'zeroshot' was expected."),
        };
        var classNames = Strings(metadata, ClassificationHead.ClassNamesKey, path)
            ?? throw Bad(path, $"metadata '{ClassificationHead.ClassNamesKey}' is missing; a JSON array with one name per class was expected.");
        var namesProblem = ClassNamesProblem(classNames, -1);
        if (namesProblem is not null) throw Bad(path, $"metadata '{ClassificationHead.ClassNamesKey}': {namesProblem}");

        var allowed = kind == ClassificationHeadKind.Linear
            ? new[] { ClassificationHead.WeightName, ClassificationHead.BiasName }
            : new[] { ClassificationHead.WeightName, ClassificationHead.LogitScaleName };
        var unexpected = reader.Tensors.Select(t => t.Name).Where(n => !allowed.Contains(n)).ToArray();
        if (unexpected.Length > 0)
            throw Bad(path, $"unexpected tensor(s) {string.Join(", ", unexpected.Select(n => $"'{n}'"))} in a {kindText} head; " +
                            $"expected {string.Join(" and ", allowed.Select(n => $"'{n}'"))}.");

        int classes = classNames.Length;
        var weight = ReadTensor(reader, path, ClassificationHead.WeightName, kind == ClassificationHeadKind.Linear ? "linear head weight" : "class embeddings",
            info => info.Shape.Length == 2 && info.Shape[0] == classes && info.Shape[1] >= 1,
            $"[{classes}, D] (one row per class name, D ≥ 1)");
        if (kind == ClassificationHeadKind.Linear)
        {
            Tensor? bias = reader.Contains(ClassificationHead.BiasName)
                ? ReadTensor(reader, path, ClassificationHead.BiasName, "bias", info => info.Shape.Length == 1 && info.Shape[0] == classes, $"[{classes}]")
                : null;
            return LinearHead.FromOwned(weight, bias, classNames);
        }
        if (!reader.Contains(ClassificationHead.LogitScaleName))
            throw Bad(path, $"tensor '{ClassificationHead.LogitScaleName}' (the zero-shot head's log scale, a scalar) is missing.");
        var logitScale = ReadTensor(reader, path, ClassificationHead.LogitScaleName, "logit scale",
            info => info.ElementCount == 1 && info.Shape.Length <= 1, "a scalar ([] or [1])").flatten()[0].item<float>();
        var templates = Strings(metadata, ClassificationHead.TemplatesKey, path) ?? [];
        return ZeroShotHead.FromOwned(weight, logitScale, classNames, templates);
    }

    private static Tensor ReadTensor(SafetensorsReader reader, string path, string name, string what, Func<TensorInfo, bool> shapeOk, string expected)
    {
        if (!reader.Contains(name)) throw Bad(path, $"tensor '{name}' ({what}) is missing; expected {expected}.");
        var info = reader.GetInfo(name);
        if (!info.DType.IsFloatingPoint())
            throw Bad(path, $"tensor '{name}' ({what}) has dtype {info.DType.ToSafetensorsName()}; F16, BF16, F32 or F64 was expected.");
        if (!shapeOk(info)) throw Bad(path, $"tensor '{name}' ({what}) has shape {info.ShapeText}; expected {expected}.");
        var tensor = reader.ReadFloat32(name);
        if (!tensor.isfinite().all().item<bool>()) throw Bad(path, $"tensor '{name}' ({what}) holds NaN or infinite values.");
        return tensor;
    }

    private static string[]? Strings(IReadOnlyDictionary<string, string> metadata, string key, string path)
    {
        if (!metadata.TryGetValue(key, out var json)) return null;
        string?[]? values;
        try
        {
            values = JsonSerializer.Deserialize<string?[]>(json);
        }
        catch (JsonException e)
        {
            throw Bad(path, $"metadata '{key}' is not a JSON array of strings ({e.Message}).", e);
        }
        if (values is null || values.Any(v => v is null))
            throw Bad(path, $"metadata '{key}' is not a JSON array of strings (it is null or holds null).");
        return Array.ConvertAll(values, v => v!);
    }

    private static InvalidDataException Bad(string path, string problem, Exception? inner = null) => new($"{path}: {problem}", inner);
}
