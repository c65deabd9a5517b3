using Microsoft.ML.TaskVectors.Images;
using Microsoft.ML.TaskVectors.TaskVectors;

namespace Microsoft.ML.TaskVectors.Data;

/// <summary>
/// One family of procedural image classification tasks (for example <c>shapes</c>): a deterministic function from
/// (seed, split, index) to an image and its label. Item i of a split has label i mod C (every class equally often);
/// its image is drawn from a random stream keyed by <see cref="StableHash.Seed"/>(seed, "FAMILY/SPLIT", i), so it does
/// not depend on the other items, the thread or the machine. See <see cref="ProceduralTasks.Families"/>.
/// </summary>
public sealed class ProceduralTaskFamily
{
    private readonly Action<ProceduralCanvas, int> _paint;

    internal ProceduralTaskFamily(string name, string description, IReadOnlyList<string> classNames, Action<ProceduralCanvas, int> paint)
    {
        Name = name;
        Description = description;
        ClassNames = Array.AsReadOnly(classNames.ToArray());
        _paint = paint;
    }

    /// <summary>The family's name, as written after <c>procedural:</c>.</summary>
    public string Name { get; }

    /// <summary>What tells the classes apart, in a few words.</summary>
    public string Description { get; }

    /// <summary>Class names in label order.</summary>
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>Item <paramref name="index"/> of <paramref name="split"/>: its image and label.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range, or the index is outside the split.</exception>
    public (RgbImage Image, int Label) Generate(DatasetSplit split, int index, ProceduralTaskOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var count = (long)options.PerClass(split) * ClassNames.Count;
        if (index < 0 || index >= count)
            throw new ArgumentOutOfRangeException(nameof(index), $"Item {index} is outside procedural:{Name}'s {split.FolderName()} split, which has {count} items.");
        return (Draw(split, index, options), Label(index));
    }

    /// <summary>
    /// A split as a dataset that draws each image when asked (nothing is held in memory); null for a test split of
    /// 0 images per class.
    /// </summary>
    /// <param name="split">Which split.</param>
    /// <param name="options">Sizes and seed; default <see cref="ProceduralTaskOptions"/>' defaults.</param>
    /// <param name="name">The dataset's name; default the family's.</param>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range; the message names it.</exception>
    public ProceduralImageDataset? Open(DatasetSplit split, ProceduralTaskOptions? options = null, string? name = null)
    {
        options ??= new ProceduralTaskOptions();
        options.Validate();
        return options.PerClass(split) == 0 ? null : new ProceduralImageDataset(this, split, options, string.IsNullOrWhiteSpace(name) ? Name : name.Trim());
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Name} ({Description}: {string.Join(", ", ClassNames)})";

    internal int Label(int index) => index % ClassNames.Count;

    internal RgbImage Draw(DatasetSplit split, int index, ProceduralTaskOptions options)
    {
        var canvas = new ProceduralCanvas(options.ImageSize, StableHash.Seed(options.Seed, $"{Name}/{split.FolderName()}", index));
        _paint(canvas, Label(index));
        return canvas.ToImage();
    }
}

/// <summary>A split of a procedural task (<see cref="ProceduralTaskFamily.Open"/>): images drawn on demand, safe to read from several threads.</summary>
public sealed class ProceduralImageDataset : LabeledImageDataset
{
    internal ProceduralImageDataset(ProceduralTaskFamily family, DatasetSplit split, ProceduralTaskOptions options, string name)
    {
        Family = family;
        Split = split;
        Options = options;
        Name = name;
        Count = options.PerClass(split) * family.ClassNames.Count;
    }

    /// <summary>The family the images come from.</summary>
    public ProceduralTaskFamily Family { get; }

    /// <summary>The sizes and seed the images are drawn with.</summary>
    public ProceduralTaskOptions Options { get; }

    /// <inheritdoc/>
    public override string Name { get; }

    /// <inheritdoc/>
    public override DatasetSplit Split { get; }

    /// <inheritdoc/>
    public override IReadOnlyList<string> ClassNames => Family.ClassNames;

    /// <inheritdoc/>
    public override int Count { get; }

    /// <inheritdoc/>
    public override int GetLabel(int index)
    {
        CheckIndex(index);
        return Family.Label(index);
    }

    /// <inheritdoc/>
    public override string GetSource(int index)
    {
        CheckIndex(index);
        return $"procedural:{Family.Name},seed={Options.Seed}/{Split.FolderName()}#{index}";
    }

    /// <inheritdoc/>
    public override RgbImage LoadImage(int index)
    {
        CheckIndex(index);
        return Family.Draw(Split, index, Options);
    }
}
