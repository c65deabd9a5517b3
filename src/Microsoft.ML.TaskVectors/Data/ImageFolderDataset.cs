using Microsoft.ML.TaskVectors.Images;

namespace Microsoft.ML.TaskVectors.Data;

/// <summary>
/// A dataset in torchvision's ImageFolder layout: <c>ROOT/&lt;split&gt;/&lt;class&gt;/…/*.png|jpg|jpeg</c>
/// with split folders <c>train</c>, <c>test</c> and optionally <c>val</c>.
/// </summary>
/// <remarks>
/// <para>
/// Classes are the sub-folders of <c>ROOT/train</c> (of the split's own folder when there is no
/// train folder), sorted ordinally; a class's index is its position. Another split may lack a class
/// but may not add one, so labels mean the same in every split. Items are ordered by class, then by
/// path (ordinal, '/' separators) within the class folder, sub-folders included. Extensions are
/// matched ignoring case; other files, and folders whose names start with '.', are ignored.
/// </para>
/// <para>
/// Without <c>ROOT/val</c>, the validation split is carved from train by a <see cref="ValidationCarve"/>
/// (by default 10 % of train, at most 5,000 images, seed 0), and the train split excludes those images.
/// </para>
/// </remarks>
public sealed class ImageFolderDataset : LabeledImageDataset
{
    private static readonly string[] Extensions = [".png", ".jpg", ".jpeg"];

    private readonly string[] _paths;
    private readonly int[] _labels;
    private readonly string[] _classNames;

    private ImageFolderDataset(string name, DatasetSplit split, string root, string[] classNames, string[] paths, int[] labels)
    {
        Name = name;
        Split = split;
        Root = root;
        _classNames = classNames;
        _paths = paths;
        _labels = labels;
    }

    /// <inheritdoc/>
    public override string Name { get; }

    /// <inheritdoc/>
    public override DatasetSplit Split { get; }

    /// <summary>The dataset's root folder (absolute).</summary>
    public string Root { get; }

    /// <summary>Whether this validation split was carved from train (there is no <c>val</c> folder).</summary>
    public bool IsCarvedFromTrain { get; private init; }

    /// <inheritdoc/>
    public override IReadOnlyList<string> ClassNames => _classNames;

    /// <inheritdoc/>
    public override int Count => _paths.Length;

    /// <inheritdoc/>
    public override int GetLabel(int index)
    {
        CheckIndex(index);
        return _labels[index];
    }

    /// <inheritdoc/>
    public override string GetSource(int index)
    {
        CheckIndex(index);
        return _paths[index];
    }

    /// <inheritdoc/>
    public override RgbImage LoadImage(int index) => RgbImage.Load(GetSource(index));

    /// <summary>Opens split <paramref name="split"/> (<c>train</c>, <c>val</c> or <c>test</c>) of the dataset under <paramref name="root"/>.</summary>
    public static ImageFolderDataset Open(string root, string split, ValidationCarve? carve = null, string? name = null) =>
        Open(root, DatasetSplitNames.Parse(split), carve, name);

    /// <summary>Opens a split of the dataset under <paramref name="root"/>.</summary>
    /// <param name="root">The folder holding <c>train</c>, <c>test</c> and optionally <c>val</c>.</param>
    /// <param name="split">Which split.</param>
    /// <param name="carve">How validation is carved from train when there is no <c>val</c> folder; default <see cref="ValidationCarve.Default"/>.</param>
    /// <param name="name">The dataset name; default the root folder's name.</param>
    /// <exception cref="DirectoryNotFoundException">The root or the split folder is missing.</exception>
    /// <exception cref="InvalidDataException">A split has no class folders, a class folder has no images, or a split has classes train lacks.</exception>
    public static ImageFolderDataset Open(string root, DatasetSplit split, ValidationCarve? carve = null, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(root);
        var full = Path.GetFullPath(root);
        if (!Directory.Exists(full)) throw new DirectoryNotFoundException($"{full}: dataset folder not found.");
        name ??= Path.GetFileName(Path.TrimEndingDirectorySeparator(full));
        carve ??= ValidationCarve.Default;

        var trainDir = Path.Combine(full, "train");
        var splitDir = Path.Combine(full, split.FolderName());
        var carved = split == DatasetSplit.Validation && !Directory.Exists(splitDir);
        var hasTrain = Directory.Exists(trainDir);
        if (carved && !hasTrain)
            throw new DirectoryNotFoundException($"{full}: neither a 'val' folder nor a 'train' folder to carve validation from.");
        var readDir = carved || split == DatasetSplit.Train ? trainDir : splitDir;
        if (!Directory.Exists(readDir))
            throw new DirectoryNotFoundException($"{readDir}: split folder not found (expected {full}/{{train,test[,val]}}/<class>/<images>).");

        var classNames = ClassFolders(hasTrain ? trainDir : readDir);
        var ownClasses = readDir == trainDir ? classNames : ClassFolders(readDir);
        var unknown = ownClasses.Except(classNames, StringComparer.Ordinal).ToArray();
        if (unknown.Length > 0)
            throw new InvalidDataException(
                $"{readDir}: class folder(s) {string.Join(", ", unknown.Select(c => $"'{c}'"))} are not in {trainDir}; every split must use train's classes.");

        var paths = new List<string>();
        var labels = new List<int>();
        foreach (var className in ownClasses)
        {
            var classDir = Path.Combine(readDir, className);
            var files = Directory.EnumerateFiles(classDir, "*", SearchOption.AllDirectories)
                .Where(f => Extensions.Contains(Path.GetExtension(f), StringComparer.OrdinalIgnoreCase))
                .Select(f => (Path: f, Key: Path.GetRelativePath(classDir, f).Replace('\\', '/')))
                .OrderBy(f => f.Key, StringComparer.Ordinal)
                .ToArray();
            if (files.Length == 0)
                throw new InvalidDataException($"{classDir}: class folder has no images (*.png, *.jpg, *.jpeg).");
            var label = Array.IndexOf(classNames, className);
            foreach (var f in files)
            {
                paths.Add(f.Path);
                labels.Add(label);
            }
        }

        var pathArray = paths.ToArray();
        var labelArray = labels.ToArray();
        if (carved || (split == DatasetSplit.Train && !Directory.Exists(Path.Combine(full, "val"))))
        {
            var (train, validation) = carve.Split(pathArray.Length);
            var keep = carved ? validation : train;
            if (keep.Length == 0)
                throw new InvalidDataException(
                    $"{trainDir}: {pathArray.Length} training images are too few to carve a validation split ({carve.Fraction:P0} rounds down to none); add a 'val' folder.");
            pathArray = keep.Select(i => pathArray[i]).ToArray();
            labelArray = keep.Select(i => labelArray[i]).ToArray();
        }
        return new ImageFolderDataset(name, split, full, classNames, pathArray, labelArray) { IsCarvedFromTrain = carved };
    }

    private static string[] ClassFolders(string splitDir)
    {
        var classes = Directory.GetDirectories(splitDir)
            .Select(Path.GetFileName)
            .Select(n => n!)
            .Where(n => !n.StartsWith('.'))
            .OrderBy(n => n, StringComparer.Ordinal)
            .ToArray();
        if (classes.Length == 0)
            throw new InvalidDataException($"{splitDir}: no class folders (expected {splitDir}/<class>/<images>).");
        return classes;
    }
}
