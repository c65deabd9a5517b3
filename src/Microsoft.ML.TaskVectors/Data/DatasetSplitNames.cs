namespace Microsoft.ML.TaskVectors.Data;

/// <summary>Split names as written in folder layouts and on command lines: <c>train</c>, <c>val</c>, <c>test</c>.</summary>
public static class DatasetSplitNames
{
    /// <summary>The folder name of a split: <c>train</c>, <c>val</c> or <c>test</c>.</summary>
    public static string FolderName(this DatasetSplit split) => split switch
    {
        DatasetSplit.Train => "train",
        DatasetSplit.Validation => "val",
        DatasetSplit.Test => "test",
        _ => throw new ArgumentOutOfRangeException(nameof(split), split, "Unknown split."),
    };

    /// <summary>Parses <c>train</c>, <c>val</c> (or <c>validation</c>) and <c>test</c>, ignoring case.</summary>
    /// <exception cref="ArgumentException">Any other name; the message lists the valid ones.</exception>
    public static DatasetSplit Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.Trim().ToLowerInvariant() switch
        {
            "train" => DatasetSplit.Train,
            "val" or "validation" => DatasetSplit.Validation,
            "test" => DatasetSplit.Test,
            _ => throw new ArgumentException($"Unknown split '{name}'; expected train, val or test.", nameof(name)),
        };
    }
}
