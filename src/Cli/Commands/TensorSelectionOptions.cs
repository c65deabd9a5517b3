using System.CommandLine;
using Microsoft.ML.TaskVectors.TaskVectors;

namespace Microsoft.ML.TaskVectors.Cli.Commands;

// Inside Microsoft.ML.*, the namespace Microsoft.ML.Command would hide System.CommandLine.Command.
using Command = System.CommandLine.Command;

/// <summary>The options that choose which tensors form task vectors, shared by the commands that build them.</summary>
internal sealed class TensorSelectionOptions
{
    public Option<string> Tensors { get; } = new("--tensors")
    {
        Description = "Which tensors form task vectors: 'all' floating-point tensors, or 'clip-vision' (the CLIP vision tower in either naming).",
        DefaultValueFactory = _ => "all",
    };

    public Option<string[]> Include { get; } = new("--include")
    {
        Description = "Regular expression a tensor name must match (repeatable).",
        AllowMultipleArgumentsPerToken = true,
    };

    public Option<string[]> Exclude { get; } = new("--exclude")
    {
        Description = "Regular expression excluding tensor names (repeatable).",
        AllowMultipleArgumentsPerToken = true,
    };

    public TensorSelectionOptions() => Tensors.AcceptOnlyFromAmong("all", "clip-vision");

    public void AddTo(Command command)
    {
        command.Options.Add(Tensors);
        command.Options.Add(Include);
        command.Options.Add(Exclude);
    }

    public TensorFilter Read(ParseResult result)
    {
        var preset = result.GetValue(Tensors) == "clip-vision" ? TensorFilter.ClipVisionTower : TensorFilter.All;
        var include = preset.Include.Concat(result.GetValue(Include) ?? []);
        return new TensorFilter(include, result.GetValue(Exclude) ?? []);
    }

    /// <summary>Distinct task names for checkpoints given on the command line: their names, prefixed by position when two agree.</summary>
    public static string[] TaskNames(IReadOnlyList<string> paths)
    {
        var names = paths.Select(TaskVector.NameFromPath).ToArray();
        return names.Distinct().Count() == names.Length ? names : names.Select((n, i) => $"{i}:{n}").ToArray();
    }
}
