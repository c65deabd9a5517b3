using Microsoft.ML.TaskVectors.Data;

namespace Microsoft.ML.TaskVectors.Trainers.Tasks;

/// <summary>
/// One classification task ready for training: its name, its class names and its splits. Every split
/// uses the same class names (a label means the same class in each).
/// </summary>
/// <param name="Name">The task's name (for example <c>EuroSAT</c>); it also picks zero-shot prompt templates.</param>
/// <param name="ClassNames">Class names in label order.</param>
/// <param name="Train">The training split (without the validation images when those were carved from it).</param>
/// <param name="Validation">The validation split: a <c>val</c> folder, or carved from train.</param>
/// <param name="Test">The test split, or null when the source has none.</param>
public sealed record TaskData(
    string Name,
    IReadOnlyList<string> ClassNames,
    LabeledImageDataset Train,
    LabeledImageDataset Validation,
    LabeledImageDataset? Test)
{
    /// <summary>
    /// Bundles the splits of one task, taking the class names from <paramref name="train"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The name is blank, or a split's class names differ from train's.</exception>
    public static TaskData Create(string name, LabeledImageDataset train, LabeledImageDataset validation, LabeledImageDataset? test)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(validation);
        var classNames = train.ClassNames.ToArray();
        foreach (var split in new[] { validation, test })
        {
            if (split is null || split.ClassNames.SequenceEqual(classNames, StringComparer.Ordinal)) continue;
            throw new ArgumentException(
                $"Task '{name}': the {split.Split.FolderName()} split has classes [{string.Join(", ", split.ClassNames)}] " +
                $"but train has [{string.Join(", ", classNames)}]; every split must use the same classes in the same order.",
                split == validation ? nameof(validation) : nameof(test));
        }
        return new TaskData(name.Trim(), Array.AsReadOnly(classNames), train, validation, test);
    }

    /// <summary>A split by kind; null for a missing test split.</summary>
    public LabeledImageDataset? Get(DatasetSplit split) => split switch
    {
        DatasetSplit.Train => Train,
        DatasetSplit.Validation => Validation,
        DatasetSplit.Test => Test,
        _ => throw new ArgumentOutOfRangeException(nameof(split), split, "Unknown split."),
    };

    /// <inheritdoc />
    public override string ToString() =>
        $"{Name}: {ClassNames.Count} classes, {Train.Count} train, {Validation.Count} val, {(Test is null ? "no" : Test.Count.ToString())} test images";
}
