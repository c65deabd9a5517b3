using System.Buffers.Binary;
using Microsoft.ML.TaskVectors.Data;
using Microsoft.ML.TaskVectors.Trainers.Tasks;
using Microsoft.ML.TaskVectors.Tests.Trainers.FineTuning;

namespace Microsoft.ML.TaskVectors.Tests.Trainers.Tasks;

public class TaskSourceTests
{
    [Test]
    public void ImageFolder_ParsesNameAndPathAndOpensTheThreeSplits()
    {
        using var dir = new TempDirectory();
        var root = FineTuningTestData.WriteColourTask(dir.File("colours"), train: 4, val: 2, test: 3);

        var source = TaskSource.Parse($" Colours = imagefolder:{root} ");
        Assert.That(source.Name, Is.EqualTo("Colours"));
        Assert.That(source.Format.Keyword, Is.EqualTo("imagefolder"));
        Assert.That(source.Argument, Is.EqualTo(root));
        Assert.That(source.ToString(), Is.EqualTo($"Colours=imagefolder:{root}"));

        var task = source.Open();
        Assert.That(task.Name, Is.EqualTo("Colours"));
        Assert.That(task.ClassNames, Is.EqualTo(new[] { "blue", "green", "red" }));
        Assert.That((task.Train.Count, task.Validation.Count, task.Test!.Count), Is.EqualTo((12, 6, 9)));
        Assert.That(task.Train.Name, Is.EqualTo("Colours"));
        Assert.That(task.Validation.Split, Is.EqualTo(DatasetSplit.Validation));
        Assert.That(((ImageFolderDataset)task.Validation).IsCarvedFromTrain, Is.False);
        Assert.That(task.Get(DatasetSplit.Test), Is.SameAs(task.Test));
    }

    [Test]
    public void ImageFolder_WithoutValAndTest_CarvesValidationAndHasNoTest()
    {
        using var dir = new TempDirectory();
        var root = FineTuningTestData.WriteColourTask(dir.File("colours"), train: 10, val: 0, test: 0);
        Assert.That(Directory.Exists(Path.Combine(root, "val")) || Directory.Exists(Path.Combine(root, "test")), Is.False);

        var task = TaskSource.Parse($"c=IMAGEFOLDER:{root}").Open(new ValidationCarve(Fraction: 0.2));

        // 30 training images: ⌊0.2·30⌋ = 6 move to validation.
        Assert.That((task.Train.Count, task.Validation.Count), Is.EqualTo((24, 6)));
        Assert.That(((ImageFolderDataset)task.Validation).IsCarvedFromTrain, Is.True);
        Assert.That(task.Test, Is.Null);
        var trainSources = Enumerable.Range(0, task.Train.Count).Select(task.Train.GetSource).ToHashSet();
        Assert.That(Enumerable.Range(0, task.Validation.Count).Select(task.Validation.GetSource).Any(trainSources.Contains), Is.False);
    }

    [Test]
    public void Idx_OpensTrainCarvedValidationAndTest()
    {
        using var dir = new TempDirectory();
        var folder = dir.File("digits");
        WriteIdx(folder, "train", 40);
        WriteIdx(folder, "t10k", 7);

        var source = TaskSource.Parse($"digits=idx:{folder}");
        Assert.That((source.Format.Keyword, source.Argument), Is.EqualTo(("idx", folder)));
        var task = source.Open();

        Assert.That(task.ClassNames, Is.EqualTo(IdxDataset.DigitClassNames));
        Assert.That((task.Train.Count, task.Validation.Count, task.Test!.Count), Is.EqualTo((36, 4, 7)));
        Assert.That(task.Test.GetLabel(6), Is.EqualTo(6 % 10));
        Assert.That(task.Train.Name, Is.EqualTo("digits"));
    }

    [Test]
    public void FashionMnist_IsABareKeywordReadingTheDebianFolder()
    {
        var source = TaskSource.Parse("fashion=fashion-mnist");
        Assert.That((source.Format.Keyword, source.Argument, source.Format.Usage), Is.EqualTo(("fashion-mnist", (string?)null, "fashion-mnist")));
        if (Directory.Exists(IdxDataset.FashionMnistDebianFolder))
        {
            var task = source.Open();
            Assert.That(task.ClassNames, Is.EqualTo(IdxDataset.FashionClassNames));
            // 60,000 training images: 10 % capped at 5,000 go to validation.
            Assert.That((task.Train.Count, task.Validation.Count, task.Test!.Count), Is.EqualTo((55000, 5000, 10000)));
        }
        else
        {
            var e = Assert.Throws<DirectoryNotFoundException>(() => source.Open())!;
            Assert.That(e.Message, Does.Contain("dataset-fashion-mnist"));
        }
    }

    [Test]
    public void Procedural_GeneratesTheThreeSplitsInMemory()
    {
        var source = TaskSource.Parse("Shapes=procedural:shapes");
        Assert.That((source.Name, source.Format.Keyword, source.Argument), Is.EqualTo(("Shapes", "procedural", "shapes")));
        var task = source.Open();
        Assert.That(task.ClassNames, Is.EqualTo(ProceduralTasks.Find("shapes").ClassNames));
        // The defaults: 100, 20 and 50 images per class of 6; validation is generated, not carved from train.
        Assert.That((task.Train.Count, task.Validation.Count, task.Test!.Count), Is.EqualTo((600, 120, 300)));
        Assert.That(new[] { task.Train, task.Validation, task.Test }.Select(d => (d.Name, d.Split)),
            Is.EqualTo(new[] { ("Shapes", DatasetSplit.Train), ("Shapes", DatasetSplit.Validation), ("Shapes", DatasetSplit.Test) }));
        Assert.That(task.Validation.LoadImage(0).Width, Is.EqualTo(32));
    }

    [Test]
    public void Procedural_TakesOptionsAfterTheFamily()
    {
        var task = TaskSource.Parse("s=PROCEDURAL:stripes,seed=3,size=48,train=5,val=2,test=0").Open();
        Assert.That((task.Train.Count, task.Validation.Count, task.Test), Is.EqualTo((20, 8, (LabeledImageDataset?)null)));
        var options = new ProceduralTaskOptions { Seed = 3, ImageSize = 48, TrainPerClass = 5, ValidationPerClass = 2, TestPerClass = 0 };
        var expected = ProceduralTasks.Find("stripes").Generate(DatasetSplit.Validation, 7, options);
        Assert.That(task.Validation.LoadImage(7).Pixels, Is.EqualTo(expected.Image.Pixels));
        Assert.That(task.Validation.GetLabel(7), Is.EqualTo(expected.Label));
    }

    [TestCase("t=procedural:triangles", "Unknown procedural task family 'triangles'; the families are shapes, stripes, colours, counts, quadrant, textures, digits, sizes.")]
    [TestCase("t=procedural", "'procedural' needs procedural:FAMILY")]
    public void Procedural_MistakesAreCaughtWhenParsing(string text, string problem)
    {
        var e = Assert.Throws<ArgumentException>(() => TaskSource.Parse(text))!;
        Assert.That(e.Message, Does.StartWith($"Task '{text}': ").And.Contain(problem));
    }

    [TestCase("cars", "expected NAME=SOURCE")]
    [TestCase("=imagefolder:/x", "the task name before '=' is empty")]
    [TestCase("cars=", "the source after '=' is empty")]
    [TestCase("cars=  ", "the source after '=' is empty")]
    [TestCase("cars=tfds:cars", "unknown source 'tfds:cars'")]
    [TestCase("cars=imagefolder:", "'imagefolder' needs imagefolder:PATH")]
    [TestCase("cars=idx", "'idx' needs idx:PATH")]
    [TestCase("f=fashion-mnist:/data", "'fashion-mnist' takes no argument, found ':/data'")]
    public void Parse_BadTextNamesTheProblemAndListsEveryAcceptedForm(string text, string problem)
    {
        var e = Assert.Throws<ArgumentException>(() => TaskSource.Parse(text))!;
        Assert.That(e.Message, Does.StartWith($"Task '{text}': {problem}"));
        foreach (var usage in new[] { "NAME=imagefolder:PATH", "NAME=idx:PATH", "NAME=fashion-mnist", "NAME=procedural:FAMILY" })
            Assert.That(e.Message, Does.Contain(usage));
    }

    [Test]
    public void Parse_ABareFolderSuggestsThePrefix()
    {
        using var dir = new TempDirectory();
        var e = Assert.Throws<ArgumentException>(() => TaskSource.Parse($"cars={dir.Path}"))!;
        Assert.That(e.Message, Does.Contain($"write imagefolder:{dir.Path} or idx:{dir.Path}"));
    }

    [Test]
    public void Open_MissingFolderNamesIt()
    {
        var e = Assert.Throws<DirectoryNotFoundException>(() => TaskSource.Parse("cars=imagefolder:/nonexistent/cars").Open())!;
        Assert.That(e.Message, Does.Contain("'/nonexistent/cars'"));
        e = Assert.Throws<DirectoryNotFoundException>(() => TaskSource.Parse("d=idx:/nonexistent/d").Open())!;
        Assert.That(e.Message, Does.Contain("'/nonexistent/d'"));
    }

    [Test]
    public void Register_AddsAFormThatParsesOpensAndIsListed()
    {
        using var dir = new TempDirectory();
        var root = FineTuningTestData.WriteColourTask(dir.File("colours"), train: 2, val: 1, test: 1);
        string? seenArgument = null;
        var keyword = "test-generator-" + Guid.NewGuid().ToString("N")[..8];
        TaskSource.Register(new TaskSourceFormat(keyword, "KIND", "a generated task", (name, argument, carve) =>
        {
            seenArgument = argument;
            return TaskSource.Parse($"{name}=imagefolder:{root}").Open(carve);
        }));

        var task = TaskSource.Parse($"gen={keyword}:stripes").Open();
        Assert.That(seenArgument, Is.EqualTo("stripes"));
        Assert.That((task.Name, task.Train.Count), Is.EqualTo(("gen", 6)));
        Assert.That(TaskSource.AcceptedForms, Does.Contain($"NAME={keyword}:KIND (a generated task)"));

        Assert.Throws<ArgumentException>(() => TaskSource.Register(new TaskSourceFormat(keyword.ToUpperInvariant(), null, "again", (_, _, _) => task)));
        Assert.Throws<ArgumentException>(() => TaskSource.Register(new TaskSourceFormat("a:b", null, "colon", (_, _, _) => task)));
        Assert.Throws<ArgumentException>(() => TaskSource.Register(new TaskSourceFormat(" ", null, "blank", (_, _, _) => task)));
    }

    [Test]
    public void TaskData_RejectsSplitsWithOtherClasses()
    {
        using var dir = new TempDirectory();
        var a = FineTuningTestData.WriteColourTask(dir.File("a"), train: 2, val: 1, test: 1);
        var b = dir.File("b");
        FineTuningTestData.WriteColourTask(b, train: 2, val: 1, test: 1);
        Directory.Delete(Path.Combine(b, "train", "red"), recursive: true);
        Directory.Delete(Path.Combine(b, "val", "red"), recursive: true);
        Directory.Delete(Path.Combine(b, "test", "red"), recursive: true);

        var train = ImageFolderDataset.Open(a, DatasetSplit.Train);
        var otherValidation = ImageFolderDataset.Open(b, DatasetSplit.Validation);
        var e = Assert.Throws<ArgumentException>(() => TaskData.Create("t", train, otherValidation, null))!;
        Assert.That(e.Message, Does.Contain("the val split has classes [blue, green] but train has [blue, green, red]"));
    }

    /// <summary>IDX files: image n is 4×3 of value n, label n mod 10.</summary>
    private static void WriteIdx(string folder, string prefix, int count)
    {
        Directory.CreateDirectory(folder);
        var images = new byte[16 + count * 12];
        BinaryPrimitives.WriteInt32BigEndian(images, 0x803);
        BinaryPrimitives.WriteInt32BigEndian(images.AsSpan(4), count);
        BinaryPrimitives.WriteInt32BigEndian(images.AsSpan(8), 4);
        BinaryPrimitives.WriteInt32BigEndian(images.AsSpan(12), 3);
        for (int n = 0; n < count; n++) images.AsSpan(16 + n * 12, 12).Fill((byte)n);
        var labels = new byte[8 + count];
        BinaryPrimitives.WriteInt32BigEndian(labels, 0x801);
        BinaryPrimitives.WriteInt32BigEndian(labels.AsSpan(4), count);
        for (int n = 0; n < count; n++) labels[8 + n] = (byte)(n % 10);
        File.WriteAllBytes(Path.Combine(folder, $"{prefix}-images-idx3-ubyte"), images);
        File.WriteAllBytes(Path.Combine(folder, $"{prefix}-labels-idx1-ubyte"), labels);
    }
}
