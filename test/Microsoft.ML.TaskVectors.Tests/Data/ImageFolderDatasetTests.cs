using Microsoft.ML.TaskVectors.Data;
using Microsoft.ML.TaskVectors.Images;
using Microsoft.ML.TaskVectors.Tests.Images;

namespace Microsoft.ML.TaskVectors.Tests.Data;

public class ImageFolderDatasetTests
{
    /// <summary>Writes a tiny image whose red value encodes <paramref name="id"/>; PNG or JPEG by extension.</summary>
    private static string WriteImage(string path, int id)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var image = RgbImage.Filled(4, 3, (byte)id, 7, 9);
        var ext = Path.GetExtension(path).ToLowerInvariant();
        if (ext == ".png") image.Save(path);
        else RgbImageTests.WriteJpeg(path, image);
        return path;
    }

    /// <summary>ROOT/&lt;split&gt;/&lt;class&gt;/img{i}.png with <paramref name="perClass"/> images per class.</summary>
    private static void WriteSplit(string root, string split, string[] classes, int perClass)
    {
        var id = 0;
        foreach (var c in classes)
            for (var i = 0; i < perClass; i++) WriteImage(Path.Combine(root, split, c, $"img{i:D3}.png"), id++);
    }

    [Test]
    public void ClassesAreOrdinalSortedAndFilesSortedByPathWithAnyExtensionCase()
    {
        using var dir = new TempDirectory();
        var root = dir.File("pets");
        WriteImage(Path.Combine(root, "test", "b", "z.PNG"), 1);
        WriteImage(Path.Combine(root, "test", "b", "a.jpeg"), 2);
        WriteImage(Path.Combine(root, "test", "b", "sub", "m.Jpg"), 3);
        WriteImage(Path.Combine(root, "test", "C", "x.png"), 4);
        WriteImage(Path.Combine(root, "test", "a", "y.png"), 5);
        File.WriteAllText(Path.Combine(root, "test", "a", "notes.txt"), "ignored");
        Directory.CreateDirectory(Path.Combine(root, "test", ".cache"));

        var test = ImageFolderDataset.Open(root, "test");
        Assert.That(test.Name, Is.EqualTo("pets"));
        Assert.That(test.Split, Is.EqualTo(DatasetSplit.Test));
        Assert.That(test.ClassNames, Is.EqualTo(new[] { "C", "a", "b" }), "ordinal: upper case first");
        Assert.That(test.Count, Is.EqualTo(5));
        var relative = Enumerable.Range(0, test.Count).Select(i => Path.GetRelativePath(root, test.GetSource(i)).Replace('\\', '/'));
        Assert.That(relative, Is.EqualTo(new[] { "test/C/x.png", "test/a/y.png", "test/b/a.jpeg", "test/b/sub/m.Jpg", "test/b/z.PNG" }));
        Assert.That(test.GetLabels(), Is.EqualTo(new[] { 0, 1, 2, 2, 2 }));
        Assert.That(test.CountPerClass(), Is.EqualTo(new[] { 1, 1, 3 }));

        var item = test.Get(4);
        Assert.That(item.Label, Is.EqualTo(2));
        Assert.That(item.Image.Pixels[..3], Is.EqualTo(new byte[] { 1, 7, 9 }), "z.PNG holds id 1");
        Assert.That((int)test.Get(2).Image.Pixels[0], Is.EqualTo(2).Within(3), "a.jpeg holds id 2 (JPEG)");
        Assert.Throws<ArgumentOutOfRangeException>(() => test.GetLabel(5));
    }

    [Test]
    public void ValidationIsCarvedFromTrainDeterministicallyAndDisjointly()
    {
        using var dir = new TempDirectory();
        var root = dir.File("ds");
        WriteSplit(root, "train", ["cat", "dog"], perClass: 20);
        WriteSplit(root, "test", ["cat", "dog"], perClass: 2);

        var train = ImageFolderDataset.Open(root, DatasetSplit.Train);
        var val = ImageFolderDataset.Open(root, "val");
        Assert.That(val.IsCarvedFromTrain, Is.True);
        Assert.That(val.Count, Is.EqualTo(4), "10 % of 40");
        Assert.That(train.Count, Is.EqualTo(36));
        var trainSources = Enumerable.Range(0, train.Count).Select(train.GetSource).ToArray();
        var valSources = Enumerable.Range(0, val.Count).Select(val.GetSource).ToArray();
        Assert.That(trainSources.Intersect(valSources), Is.Empty);
        var all = Directory.GetFiles(Path.Combine(root, "train"), "*.png", SearchOption.AllDirectories);
        Assert.That(trainSources.Concat(valSources), Is.EquivalentTo(all));
        Assert.That(trainSources, Is.Ordered.Using((IComparer<string>)StringComparer.Ordinal), "kept in dataset order");

        // The same indices as ValidationCarve.Default picks, and the same on every open.
        var (_, picked) = ValidationCarve.Default.Split(40);
        var fullOrder = all.Order(StringComparer.Ordinal).ToArray();
        Assert.That(valSources, Is.EqualTo(picked.Select(i => fullOrder[i])));
        var again = ImageFolderDataset.Open(root, "val");
        Assert.That(Enumerable.Range(0, again.Count).Select(again.GetSource), Is.EqualTo(valSources));
        Assert.That(val.GetLabels(), Is.EqualTo(valSources.Select(s => s.Contains("/dog/") ? 1 : 0)));

        // A different seed picks differently; a cap limits the count.
        var other = ImageFolderDataset.Open(root, "val", new ValidationCarve(Seed: 1));
        Assert.That(Enumerable.Range(0, other.Count).Select(other.GetSource), Is.Not.EqualTo(valSources));
        Assert.That(ImageFolderDataset.Open(root, "val", new ValidationCarve(0.5, MaxCount: 3)).Count, Is.EqualTo(3));
        Assert.That(ImageFolderDataset.Open(root, "train", new ValidationCarve(0.5, MaxCount: 3)).Count, Is.EqualTo(37));
    }

    [Test]
    public void ValFolderIsUsedWhenPresentAndTrainKeepsEverything()
    {
        using var dir = new TempDirectory();
        var root = dir.File("ds");
        WriteSplit(root, "train", ["a", "b", "c"], perClass: 5);
        WriteSplit(root, "val", ["b"], perClass: 2);
        var val = ImageFolderDataset.Open(root, "val");
        Assert.That(val.IsCarvedFromTrain, Is.False);
        Assert.That(val.ClassNames, Is.EqualTo(new[] { "a", "b", "c" }), "classes come from train");
        Assert.That(val.GetLabels(), Is.EqualTo(new[] { 1, 1 }), "b keeps its train index even though val lacks a and c");
        Assert.That(ImageFolderDataset.Open(root, "train").Count, Is.EqualTo(15));
    }

    [Test]
    public void CarvedSplitsPartitionEveryImageForLargerTrainSets()
    {
        var (train, val) = ValidationCarve.Default.Split(123_456);
        Assert.That(val.Length, Is.EqualTo(5000), "10 % capped at 5,000");
        Assert.That(train.Length, Is.EqualTo(118_456));
        Assert.That(train.Concat(val).Order(), Is.EqualTo(Enumerable.Range(0, 123_456)));
        Assert.That(ValidationCarve.Default.Split(999).Validation.Length, Is.EqualTo(99), "⌊99.9⌋");
        Assert.That(ValidationCarve.Default.Split(999).Validation, Is.EqualTo(ValidationCarve.Default.Split(999).Validation));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ValidationCarve(Fraction: 1.0).Split(10));
    }

    [Test]
    public void LayoutProblemsNameTheFolder()
    {
        using var dir = new TempDirectory();
        var root = dir.File("ds");

        var e1 = Assert.Throws<DirectoryNotFoundException>(() => ImageFolderDataset.Open(root, "train"))!;
        Assert.That(e1.Message, Does.Contain(root));

        WriteSplit(root, "train", ["a", "b"], perClass: 3);
        var e2 = Assert.Throws<DirectoryNotFoundException>(() => ImageFolderDataset.Open(root, "test"))!;
        Assert.That(e2.Message, Does.Contain(Path.Combine(root, "test")).And.Contain("split folder not found"));

        Directory.CreateDirectory(Path.Combine(root, "test", "a"));
        var e3 = Assert.Throws<InvalidDataException>(() => ImageFolderDataset.Open(root, "test"))!;
        Assert.That(e3.Message, Does.Contain(Path.Combine(root, "test", "a")).And.Contain("no images"));

        WriteImage(Path.Combine(root, "test", "a", "1.png"), 1);
        WriteImage(Path.Combine(root, "test", "zebra", "1.png"), 1);
        var e4 = Assert.Throws<InvalidDataException>(() => ImageFolderDataset.Open(root, "test"))!;
        Assert.That(e4.Message, Does.Contain("'zebra'").And.Contain(Path.Combine(root, "train")));

        var e5 = Assert.Throws<InvalidDataException>(() => ImageFolderDataset.Open(root, "val"))!;
        Assert.That(e5.Message, Does.Contain("6 training images are too few"));

        var empty = dir.File("empty");
        Directory.CreateDirectory(Path.Combine(empty, "train"));
        var e6 = Assert.Throws<InvalidDataException>(() => ImageFolderDataset.Open(empty, "train"))!;
        Assert.That(e6.Message, Does.Contain(Path.Combine(empty, "train")).And.Contain("no class folders"));

        Assert.Throws<ArgumentException>(() => ImageFolderDataset.Open(root, "dev"));
    }

    [Test]
    public void CorruptImagesFailWhenLoadedNamingTheFile()
    {
        using var dir = new TempDirectory();
        var root = dir.File("ds");
        WriteSplit(root, "test", ["a"], perClass: 1);
        var bad = Path.Combine(root, "test", "a", "zz.jpg");
        File.WriteAllText(bad, "not a jpeg");
        var test = ImageFolderDataset.Open(root, "test");
        Assert.That(test.Count, Is.EqualTo(2));
        var e = Assert.Throws<InvalidDataException>(() => test.Get(1))!;
        Assert.That(e.Message, Does.StartWith(bad));
    }
}
