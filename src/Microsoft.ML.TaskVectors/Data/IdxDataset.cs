using System.Buffers.Binary;
using System.IO.Compression;
using Microsoft.ML.TaskVectors.Images;

namespace Microsoft.ML.TaskVectors.Data;

/// <summary>
/// MNIST-style data in IDX files: <c>train-images-idx3-ubyte</c> and <c>train-labels-idx1-ubyte</c>
/// for training, <c>t10k-images-idx3-ubyte</c> and <c>t10k-labels-idx1-ubyte</c> for test, each plain
/// or gzip-compressed (<c>.gz</c>). Serves MNIST and Fashion-MNIST; grey images become RGB.
/// </summary>
/// <remarks>
/// The validation split is carved from the training files by a <see cref="ValidationCarve"/> (by
/// default 10 %, at most 5,000 images, seed 0) and the train split excludes those images. Images are
/// held in memory (47 MB for the 60,000 training images).
/// </remarks>
public sealed class IdxDataset : LabeledImageDataset
{
    /// <summary>Where Debian's and Ubuntu's <c>dataset-fashion-mnist</c> package installs the four Fashion-MNIST files (gzip-compressed).</summary>
    public const string FashionMnistDebianFolder = "/usr/share/datasets/fashion-mnist";

    /// <summary>MNIST's classes: the digits "0" … "9".</summary>
    public static IReadOnlyList<string> DigitClassNames { get; } = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

    /// <summary>Fashion-MNIST's classes, in label order.</summary>
    public static IReadOnlyList<string> FashionClassNames { get; } =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    private const int ImagesMagic = 0x00000803; // unsigned bytes, 3 dimensions
    private const int LabelsMagic = 0x00000801; // unsigned bytes, 1 dimension

    private readonly byte[] _pixels;
    private readonly byte[] _labels;
    private readonly int[] _items;
    private readonly IReadOnlyList<string> _classNames;

    private IdxDataset(string name, DatasetSplit split, string imagesFile, string labelsFile, int width, int height,
        byte[] pixels, byte[] labels, int[] items, IReadOnlyList<string> classNames)
    {
        Name = name;
        Split = split;
        ImagesFile = imagesFile;
        LabelsFile = labelsFile;
        ImageWidth = width;
        ImageHeight = height;
        _pixels = pixels;
        _labels = labels;
        _items = items;
        _classNames = classNames;
    }

    /// <inheritdoc/>
    public override string Name { get; }

    /// <inheritdoc/>
    public override DatasetSplit Split { get; }

    /// <summary>The images file read.</summary>
    public string ImagesFile { get; }

    /// <summary>The labels file read.</summary>
    public string LabelsFile { get; }

    /// <summary>Image width (columns) in pixels.</summary>
    public int ImageWidth { get; }

    /// <summary>Image height (rows) in pixels.</summary>
    public int ImageHeight { get; }

    /// <inheritdoc/>
    public override IReadOnlyList<string> ClassNames => _classNames;

    /// <inheritdoc/>
    public override int Count => _items.Length;

    /// <inheritdoc/>
    public override int GetLabel(int index)
    {
        CheckIndex(index);
        return _labels[_items[index]];
    }

    /// <summary>The position of item <paramref name="index"/> in the IDX files.</summary>
    public int GetFileIndex(int index)
    {
        CheckIndex(index);
        return _items[index];
    }

    /// <inheritdoc/>
    public override string GetSource(int index) => $"{ImagesFile}#{GetFileIndex(index)}";

    /// <inheritdoc/>
    public override RgbImage LoadImage(int index)
    {
        var size = ImageWidth * ImageHeight;
        return RgbImage.FromGrey(ImageWidth, ImageHeight, _pixels.AsSpan(GetFileIndex(index) * size, size));
    }

    /// <summary>Opens split <paramref name="split"/> (<c>train</c>, <c>val</c> or <c>test</c>) of the IDX files in <paramref name="folder"/>.</summary>
    public static IdxDataset Open(string folder, string split, IReadOnlyList<string>? classNames = null,
        ValidationCarve? carve = null, string? name = null) =>
        Open(folder, DatasetSplitNames.Parse(split), classNames, carve, name);

    /// <summary>Opens a split of the IDX files in <paramref name="folder"/>.</summary>
    /// <param name="folder">The folder holding the four files (plain or <c>.gz</c>).</param>
    /// <param name="split">Train and validation read the <c>train-*</c> files, test the <c>t10k-*</c> files.</param>
    /// <param name="classNames">Class names; by default Fashion-MNIST's when the folder's path contains
    /// "fashion" (ignoring case), else the digits.</param>
    /// <param name="carve">How validation is carved from train; default <see cref="ValidationCarve.Default"/>.</param>
    /// <param name="name">The dataset name; default <c>FashionMNIST</c> or <c>MNIST</c> as the class names are chosen.</param>
    /// <exception cref="DirectoryNotFoundException">The folder is missing.</exception>
    /// <exception cref="FileNotFoundException">An images or labels file is missing.</exception>
    /// <exception cref="InvalidDataException">A file is malformed (magic number, dimensions, size) or the two files disagree; the message names the file.</exception>
    public static IdxDataset Open(string folder, DatasetSplit split, IReadOnlyList<string>? classNames = null,
        ValidationCarve? carve = null, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(folder);
        var full = Path.GetFullPath(folder);
        if (!Directory.Exists(full)) throw new DirectoryNotFoundException($"{full}: IDX dataset folder not found.");
        var fashion = LooksLikeFashionMnist(full);
        classNames ??= fashion ? FashionClassNames : DigitClassNames;
        if (classNames.Count == 0) throw new ArgumentException("At least one class name is needed.", nameof(classNames));
        name ??= fashion ? "FashionMNIST" : "MNIST";
        carve ??= ValidationCarve.Default;

        var prefix = split == DatasetSplit.Test ? "t10k" : "train";
        var imagesFile = FindFile(full, prefix, "images", 3);
        var labelsFile = FindFile(full, prefix, "labels", 1);
        var (count, height, width, pixels) = ReadImages(imagesFile);
        var labels = ReadLabels(labelsFile);
        if (labels.Length != count)
            throw new InvalidDataException($"{labelsFile}: {labels.Length} labels, but {imagesFile} has {count} images.");
        for (var i = 0; i < labels.Length; i++)
            if (labels[i] >= classNames.Count)
                throw new InvalidDataException($"{labelsFile}: label {labels[i]} of item {i} is not below the class count {classNames.Count}.");

        int[] items;
        if (split == DatasetSplit.Test) items = Enumerable.Range(0, count).ToArray();
        else
        {
            var (train, validation) = carve.Split(count);
            items = split == DatasetSplit.Train ? train : validation;
            if (items.Length == 0)
                throw new InvalidDataException($"{imagesFile}: {count} training images are too few to carve a validation split.");
        }
        return new IdxDataset(name, split, imagesFile, labelsFile, width, height, pixels, labels, items, classNames.ToArray());
    }

    /// <summary>Whether a folder path names Fashion-MNIST (contains "fashion", ignoring case).</summary>
    public static bool LooksLikeFashionMnist(string folder) =>
        folder.Contains("fashion", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// Reads an IDX3 unsigned-byte images file (plain or gzip): the image count, rows, columns and all
    /// pixels, image after image, row by row.
    /// </summary>
    public static (int Count, int Rows, int Columns, byte[] Pixels) ReadImages(string path)
    {
        var data = ReadAll(path);
        var dims = ReadHeader(path, data, ImagesMagic, "images (magic 0x00000803: unsigned bytes, 3 dimensions)");
        var (count, rows, columns) = (dims[0], dims[1], dims[2]);
        if (rows <= 0 || columns <= 0)
            throw new InvalidDataException($"{path}: image size {rows}×{columns} must be positive.");
        var expected = 16L + (long)count * rows * columns;
        if (data.LongLength != expected)
            throw new InvalidDataException(
                $"{path}: the header announces {count} images of {rows}×{columns} ({expected} bytes with the header), but the file holds {data.LongLength} bytes.");
        return (count, rows, columns, data[16..]);
    }

    /// <summary>Reads an IDX1 unsigned-byte labels file (plain or gzip).</summary>
    public static byte[] ReadLabels(string path)
    {
        var data = ReadAll(path);
        var count = ReadHeader(path, data, LabelsMagic, "labels (magic 0x00000801: unsigned bytes, 1 dimension)")[0];
        if (data.LongLength != 8L + count)
            throw new InvalidDataException(
                $"{path}: the header announces {count} labels ({8L + count} bytes with the header), but the file holds {data.LongLength} bytes.");
        return data[8..];
    }

    private static int[] ReadHeader(string path, byte[] data, int magic, string what)
    {
        var dimensions = magic & 0xFF;
        var headerSize = 4 + 4 * dimensions;
        if (data.Length < headerSize)
            throw new InvalidDataException($"{path}: {data.Length} bytes is too short for an IDX {what} header ({headerSize} bytes).");
        var found = BinaryPrimitives.ReadInt32BigEndian(data);
        if (found != magic)
            throw new InvalidDataException($"{path}: magic number 0x{found:X8} is not IDX {what}.");
        var dims = new int[dimensions];
        for (var d = 0; d < dimensions; d++)
        {
            dims[d] = BinaryPrimitives.ReadInt32BigEndian(data.AsSpan(4 + 4 * d));
            if (dims[d] < 0) throw new InvalidDataException($"{path}: dimension {d} is negative ({dims[d]}).");
        }
        return dims;
    }

    private static byte[] ReadAll(string path)
    {
        var bytes = File.ReadAllBytes(path);
        if (!path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase)) return bytes;
        try
        {
            using var gzip = new GZipStream(new MemoryStream(bytes), CompressionMode.Decompress);
            using var output = new MemoryStream();
            gzip.CopyTo(output);
            return output.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path}: not a valid gzip file ({e.Message}).", e);
        }
    }

    private static string FindFile(string folder, string prefix, string kind, int dims)
    {
        // The usual name, and the dotted variant some archives use (train-images.idx3-ubyte).
        string[] stems = [$"{prefix}-{kind}-idx{dims}-ubyte", $"{prefix}-{kind}.idx{dims}-ubyte"];
        foreach (var stem in stems)
            foreach (var file in new[] { stem, stem + ".gz" })
            {
                var path = Path.Combine(folder, file);
                if (File.Exists(path)) return path;
            }
        throw new FileNotFoundException(
            $"{folder}: no {kind} file for the {(prefix == "t10k" ? "test" : "train")} split (expected {stems[0]} or {stems[0]}.gz).",
            Path.Combine(folder, stems[0]));
    }
}
