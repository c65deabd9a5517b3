using Microsoft.ML.TaskVectors.Heads;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Onnx;
using Microsoft.ML.TaskVectors.Text;

namespace Microsoft.ML.TaskVectors.Cli.Commands;

/// <summary>Parses <c>--head linear:FILE|zeroshot:CLASSES_FILE</c> and <c>--templates</c> into a head.</summary>
internal static class HeadSpecification
{
    /// <summary>A linear head read from its file, or a zero-shot head built with the model's text tower.</summary>
    public static ClassificationHead Load(string specification, string modelFolder, string? templates, CancellationToken cancellationToken)
    {
        var colon = specification.IndexOf(':');
        var (kind, path) = colon < 0 ? (specification, "") : (specification[..colon], specification[(colon + 1)..]);
        if (path.Length == 0 || kind is not ("linear" or "zeroshot"))
            throw new ArgumentException($"--head: expected linear:HEAD.safetensors or zeroshot:CLASSES.txt, got '{specification}'.");
        if (!File.Exists(path)) throw new FileNotFoundException($"--head: no such file '{path}'.", path);
        // Any saved head file (a linear probe, or the zero-shot head finetune stores next to τ).
        if (kind == "linear") return ClassificationHead.Load(path);

        var classNames = File.ReadAllLines(path).Select(l => l.Trim()).Where(l => l.Length > 0).ToArray();
        if (classNames.Length < 2) throw new ArgumentException($"--head: {path} must list at least two class names, one per line.");
        using var model = ClipModel.Load(modelFolder, loadText: true);
        if (model.Text is null) throw new ArgumentException($"--head zeroshot: the model in {modelFolder} has no text tower to embed class names with.");
        var tokenizer = ClipTokenizer.FromFolder(modelFolder);
        return ZeroShotHead.Build(model, tokenizer, classNames, Templates(templates), cancellationToken: cancellationToken);
    }

    /// <summary>A known template set by name, a file of templates, or CLIP's default "a photo of a {0}.".</summary>
    public static IReadOnlyList<string> Templates(string? option) =>
        option is null ? PromptTemplates.Default
        : File.Exists(option) ? PromptTemplates.FromFile(option)
        : PromptTemplates.Names.Contains(option, StringComparer.OrdinalIgnoreCase) ? PromptTemplates.For(option)
        : throw new ArgumentException($"--templates: '{option}' is neither a file nor a known set ({string.Join(", ", PromptTemplates.Names)}).");
}
