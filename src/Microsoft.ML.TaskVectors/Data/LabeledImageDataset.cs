using Microsoft.ML.TaskVectors.Images;

namespace Microsoft.ML.TaskVectors.Data;

/// <summary>
/// One split of an image classification dataset: a fixed, ordered list of (image, class index)
/// items. Labels and sources are cheap to read; images are decoded when asked for. Safe to read from
/// several threads.
/// </summary>
public abstract class LabeledImageDataset
{
    /// <summary>The dataset's name (for example the ImageFolder root's folder name, or <c>MNIST</c>).</summary>
    public abstract string Name { get; }

    /// <summary>The split these items belong to.</summary>
    public abstract DatasetSplit Split { get; }

    /// <summary>Class names; a label is an index into this list.</summary>
    public abstract IReadOnlyList<string> ClassNames { get; }

    /// <summary>Number of items.</summary>
    public abstract int Count { get; }

    /// <summary>The class index of item <paramref name="index"/>, without decoding its image.</summary>
    public abstract int GetLabel(int index);

    /// <summary>Where item <paramref name="index"/> comes from: a file path, or <c>file#n</c> for the n-th image of an IDX file.</summary>
    public abstract string GetSource(int index);

    /// <summary>Decodes the image of item <paramref name="index"/>.</summary>
    public abstract RgbImage LoadImage(int index);

    /// <summary>Item <paramref name="index"/>: its image, label and source.</summary>
    public LabeledImage Get(int index) => new(LoadImage(index), GetLabel(index), GetSource(index));

    /// <summary>Every item's label, in order.</summary>
    public int[] GetLabels()
    {
        var labels = new int[Count];
        for (var i = 0; i < labels.Length; i++) labels[i] = GetLabel(i);
        return labels;
    }

    /// <summary>Items per class, indexed like <see cref="ClassNames"/>.</summary>
    public int[] CountPerClass()
    {
        var counts = new int[ClassNames.Count];
        for (var i = 0; i < Count; i++) counts[GetLabel(i)]++;
        return counts;
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Name} ({Split.FolderName()}): {Count} images, {ClassNames.Count} classes";

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> unless 0 ≤ <paramref name="index"/> &lt; <see cref="Count"/>.</summary>
    protected void CheckIndex(int index)
    {
        if ((uint)index >= (uint)Count)
            throw new ArgumentOutOfRangeException(nameof(index), $"Item {index} is outside {Name} ({Split.FolderName()}), which has {Count} items.");
    }
}
