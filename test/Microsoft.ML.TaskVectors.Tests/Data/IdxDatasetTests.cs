using System.Buffers.Binary;
using System.IO.Compression;
using Microsoft.ML.TaskVectors.Data;

namespace Microsoft.ML.TaskVectors.Tests.Data;

public class IdxDatasetTests
{
    private static byte[] Header(int magic, params int[] dims)
    {
        var header = new byte[4 + 4 * dims.Length];
        BinaryPrimitives.WriteInt32BigEndian(header, magic);
        for (var d = 0; d < dims.Length; d++) BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4 + 4 * d), dims[d]);
        return header;
    }

    /// <summary>Pixel (x, y) of image n is (n·31 + y·7 + x) mod 256; label of image n is n mod 10.</summary>
    private static byte Pixel(int n, int x, int y) => (byte)((n * 31 + y * 7 + x) % 256);

    private static byte[] ImagesFile(int count, int rows, int cols)
    {
        var data = new List<byte>(Header(0x803, count, rows, cols));
        for (var n = 0; n < count; n++)
            for (var y = 0; y < rows; y++)
                for (var x = 0; x < cols; x++) data.Add(Pixel(n, x, y));
        return data.ToArray();
    }

    private static byte[] LabelsFile(int count) =>
        Header(0x801, count).Concat(Enumerable.Range(0, count).Select(n => (byte)(n % 10))).ToArray();

    private static void Write(string path, byte[] data, bool gzip)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        if (!gzip)
        {
            File.WriteAllBytes(path, data);
            return;
        }
        using var file = File.Create(path + ".gz");
        using var z = new GZipStream(file, CompressionLevel.Fastest);
        z.Write(data);
    }

    private static string WriteDataset(string folder, bool gzip, int train = 50, int test = 12, int rows = 4, int cols = 3)
    {
        Write(Path.Combine(folder, "train-images-idx3-ubyte"), ImagesFile(train, rows, cols), gzip);
        Write(Path.Combine(folder, "train-labels-idx1-ubyte"), LabelsFile(train), gzip);
        Write(Path.Combine(folder, "t10k-images-idx3-ubyte"), ImagesFile(test, rows, cols), gzip);
        Write(Path.Combine(folder, "t10k-labels-idx1-ubyte"), LabelsFile(test), gzip);
        return folder;
    }

    [TestCase(false)]
    [TestCase(true)]
    public void ReadsImagesAndLabelsPlainOrGzipAsRgb(bool gzip)
    {
        using var dir = new TempDirectory();
        var folder = WriteDataset(dir.File("mnist"), gzip);
        var test = IdxDataset.Open(folder, "test");
        Assert.That(test.Name, Is.EqualTo("MNIST"));
        Assert.That(test.ClassNames, Is.EqualTo(new[] { "0", "1", "2", "3", "4", "5", "6", "7", "8", "9" }));
        Assert.That(test.Count, Is.EqualTo(12));
        Assert.That((test.ImageWidth, test.ImageHeight), Is.EqualTo((3, 4)));
        Assert.That(test.GetLabels(), Is.EqualTo(Enumerable.Range(0, 12).Select(n => n % 10)));
        Assert.That(test.ImagesFile, Does.EndWith(gzip ? "t10k-images-idx3-ubyte.gz" : "t10k-images-idx3-ubyte"));
        Assert.That(test.GetSource(11), Is.EqualTo(test.ImagesFile + "#11"));

        var item = test.Get(11);
        Assert.That(item.Label, Is.EqualTo(1));
        Assert.That((item.Image.Width, item.Image.Height), Is.EqualTo((3, 4)));
        for (var y = 0; y < 4; y++)
            for (var x = 0; x < 3; x++)
            {
                var o = item.Image.Offset(x, y);
                var expected = Pixel(11, x, y);
                Assert.That(item.Image.Pixels[o..(o + 3)], Is.EqualTo(new[] { expected, expected, expected }), $"pixel ({x}, {y})");
            }
    }

    [Test]
    public void ValidationIsCarvedFromTrainLikeImageFolder()
    {
        using var dir = new TempDirectory();
        var folder = WriteDataset(dir.File("mnist"), gzip: true, train: 50);
        var train = IdxDataset.Open(folder, DatasetSplit.Train);
        var val = IdxDataset.Open(folder, DatasetSplit.Validation);
        Assert.That(val.Count, Is.EqualTo(5));
        Assert.That(train.Count, Is.EqualTo(45));
        var trainIdx = Enumerable.Range(0, train.Count).Select(train.GetFileIndex).ToArray();
        var valIdx = Enumerable.Range(0, val.Count).Select(val.GetFileIndex).ToArray();
        Assert.That(valIdx, Is.EqualTo(ValidationCarve.Default.Split(50).Validation));
        Assert.That(trainIdx.Concat(valIdx).Order(), Is.EqualTo(Enumerable.Range(0, 50)));
        Assert.That(val.GetLabels(), Is.EqualTo(valIdx.Select(n => n % 10)));
        Assert.That(val.Get(0).Image.Pixels[0], Is.EqualTo(Pixel(valIdx[0], 0, 0)));
    }

    [Test]
    public void FashionFoldersGetFashionNamesAndCallersCanChoose()
    {
        using var dir = new TempDirectory();
        var folder = WriteDataset(dir.File("Fashion-MNIST"), gzip: true);
        var fashion = IdxDataset.Open(folder, "test");
        Assert.That(fashion.Name, Is.EqualTo("FashionMNIST"));
        Assert.That(fashion.ClassNames[0], Is.EqualTo("T-shirt/top"));
        Assert.That(fashion.ClassNames[9], Is.EqualTo("Ankle boot"));
        Assert.That(fashion.ClassNames, Has.Count.EqualTo(10));

        var custom = IdxDataset.Open(folder, "test", classNames: ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"], name: "Digits");
        Assert.That(custom.Name, Is.EqualTo("Digits"));
        Assert.That(custom.ClassNames[3], Is.EqualTo("three"));

        var e = Assert.Throws<InvalidDataException>(() => IdxDataset.Open(folder, "test", classNames: ["a", "b"]))!;
        Assert.That(e.Message, Does.Contain("t10k-labels-idx1-ubyte.gz").And.Contain("label 2 of item 2"));
        Assert.That(IdxDataset.FashionMnistDebianFolder, Is.EqualTo("/usr/share/datasets/fashion-mnist"));
    }

    [Test]
    public void AcceptsTheDottedFileNames()
    {
        using var dir = new TempDirectory();
        var folder = dir.File("mnist");
        Write(Path.Combine(folder, "t10k-images.idx3-ubyte"), ImagesFile(3, 2, 2), gzip: false);
        Write(Path.Combine(folder, "t10k-labels.idx1-ubyte"), LabelsFile(3), gzip: false);
        Assert.That(IdxDataset.Open(folder, "test").Count, Is.EqualTo(3));
    }

    private static InvalidDataException Malformed(byte[] images, byte[] labels, bool gzip = false)
    {
        using var dir = new TempDirectory();
        var folder = dir.File("mnist");
        Write(Path.Combine(folder, "t10k-images-idx3-ubyte"), images, gzip);
        Write(Path.Combine(folder, "t10k-labels-idx1-ubyte"), labels, gzip);
        return Assert.Throws<InvalidDataException>(() => IdxDataset.Open(folder, "test"))!;
    }

    [Test]
    public void MalformedFilesAreRejectedNamingTheFile()
    {
        var good = ImagesFile(4, 3, 3);
        var labels = LabelsFile(4);

        var e = Malformed([.. Header(0x802, 4, 3, 3), .. good[16..]], labels);
        Assert.That(e.Message, Does.Contain("t10k-images-idx3-ubyte:").And.Contain("magic number 0x00000802"));

        e = Malformed(good, [.. Header(0x803, 4), .. labels[8..]]);
        Assert.That(e.Message, Does.Contain("t10k-labels-idx1-ubyte:").And.Contain("magic number 0x00000803"));

        e = Malformed(good[..^1], labels);
        Assert.That(e.Message, Does.Contain("t10k-images-idx3-ubyte:").And.Contain("announces 4 images of 3×3 (52 bytes").And.Contain("holds 51 bytes"));

        e = Malformed([.. good, 0], labels);
        Assert.That(e.Message, Does.Contain("holds 53 bytes"));

        e = Malformed(good, LabelsFile(4)[..^2]);
        Assert.That(e.Message, Does.Contain("t10k-labels-idx1-ubyte:").And.Contain("announces 4 labels"));

        e = Malformed(good, LabelsFile(5));
        Assert.That(e.Message, Does.Contain("t10k-labels-idx1-ubyte: 5 labels, but").And.Contain("has 4 images"));

        e = Malformed([.. Header(0x803, 4, 0, 3)], labels);
        Assert.That(e.Message, Does.Contain("image size 0×3 must be positive"));

        e = Malformed([.. Header(0x803, -1, 3, 3)], labels);
        Assert.That(e.Message, Does.Contain("dimension 0 is negative"));

        e = Malformed(good[..10], labels);
        Assert.That(e.Message, Does.Contain("10 bytes is too short"));

        e = Malformed(good, [.. Header(0x801, 4), 1, 2, 3, 200]);
        Assert.That(e.Message, Does.Contain("label 200 of item 3 is not below the class count 10"));
    }

    [Test]
    public void BadGzipAndMissingFilesAreReported()
    {
        using var dir = new TempDirectory();
        var folder = dir.File("mnist");
        Directory.CreateDirectory(folder);
        File.WriteAllBytes(Path.Combine(folder, "t10k-images-idx3-ubyte.gz"), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        Write(Path.Combine(folder, "t10k-labels-idx1-ubyte"), LabelsFile(4), gzip: false);
        var e = Assert.Throws<InvalidDataException>(() => IdxDataset.Open(folder, "test"))!;
        Assert.That(e.Message, Does.Contain("t10k-images-idx3-ubyte.gz: not a valid gzip file"));

        var nf = Assert.Throws<FileNotFoundException>(() => IdxDataset.Open(folder, "train"))!;
        Assert.That(nf.Message, Does.Contain(folder).And.Contain("train-images-idx3-ubyte or train-images-idx3-ubyte.gz"));

        Assert.Throws<DirectoryNotFoundException>(() => IdxDataset.Open(dir.File("nowhere"), "test"));
    }

    [Test]
    public void DebianFashionMnistPackageWhenInstalled()
    {
        var folder = IdxDataset.FashionMnistDebianFolder;
        if (!File.Exists(Path.Combine(folder, "t10k-images-idx3-ubyte.gz")))
            Assert.Ignore($"{folder} is not installed (Debian package dataset-fashion-mnist).");
        var test = IdxDataset.Open(folder, "test");
        Assert.That(test.Count, Is.EqualTo(10_000));
        Assert.That((test.ImageWidth, test.ImageHeight), Is.EqualTo((28, 28)));
        Assert.That(test.ClassNames[9], Is.EqualTo("Ankle boot"));
        Assert.That(test.CountPerClass(), Is.All.EqualTo(1000));
    }
}
