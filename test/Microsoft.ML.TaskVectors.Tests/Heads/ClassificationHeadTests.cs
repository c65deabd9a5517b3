using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Heads;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Onnx;
using Microsoft.ML.TaskVectors.Tests.Models;
using static Microsoft.ML.TaskVectors.Tests.Onnx.OnnxTestRuntime;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Heads;

/// <summary>Head files (round trips, malformed files) and ONNX conversion; also the helpers of the other head tests.</summary>
public class ClassificationHeadTests
{
    private TempDirectory _dir = null!;

    [SetUp]
    public void CreateFolder() => _dir = new TempDirectory();

    [TearDown]
    public void DeleteFolder() => _dir.Dispose();

    [TestCase(true)]
    [TestCase(false)]
    public void LinearHead_SaveLoad_GivesIdenticalLogits(bool withBias)
    {
        using var scope = NewDisposeScope();
        var generator = new TorchSharp.torch.Generator(11);
        using var head = new LinearHead(randn(4, 6, generator: generator), withBias ? randn(4, generator: generator) : null, ["a", "b", "c", "d"]);
        var path = _dir.File("linear.safetensors");
        head.Save(path);

        using var loaded = ClassificationHead.Load(path);
        Assert.That(loaded, Is.InstanceOf<LinearHead>());
        Assert.That(loaded.ClassNames, Is.EqualTo(head.ClassNames));
        Assert.That(((LinearHead)loaded).Bias is null, Is.EqualTo(!withBias));
        var embeds = randn(5, 6, generator: generator);
        Assert.That(loaded.Logits(embeds).eq(head.Logits(embeds)).all().item<bool>(), Is.True);
        Assert.That(Directory.GetFiles(_dir.Path), Is.EqualTo(new[] { path }), "no temporary file is left behind");

        // The file is plain safetensors with the documented names.
        using var reader = SafetensorsReader.Open(path);
        Assert.That(reader.Tensors.Select(t => t.Name), Is.EqualTo(withBias ? new[] { "bias", "weight" } : ["weight"]));
        Assert.That(reader.Metadata["kind"], Is.EqualTo("linear"));
        Assert.That(reader.Metadata["class_names"], Is.EqualTo("[\"a\",\"b\",\"c\",\"d\"]"));
    }

    [Test]
    public void ZeroShotHead_SaveLoad_GivesIdenticalLogits()
    {
        using var scope = NewDisposeScope();
        var generator = new TorchSharp.torch.Generator(12);
        string[] names = ["café", "say \"cheese\"", "a, b"];
        string[] templates = ["a photo of a {0}.", "{0} [sic]"];
        using var head = new ZeroShotHead(randn(3, 8, generator: generator), Math.Log(1 / 0.07), names, templates);
        var path = _dir.File("zeroshot.safetensors");
        head.Save(path);
        head.Save(path); // overwriting works too

        using var loaded = ZeroShotHead.Load(path);
        Assert.That(loaded.ClassNames, Is.EqualTo(names));
        Assert.That(loaded.Templates, Is.EqualTo(templates));
        Assert.That(loaded.LogitScale, Is.EqualTo(head.LogitScale));
        Assert.That(loaded.ClassEmbeddings.eq(head.ClassEmbeddings).all().item<bool>(), Is.True, "stored embeddings are not renormalised");
        var embeds = randn(4, 8, generator: generator);
        Assert.That(loaded.Logits(embeds).eq(head.Logits(embeds)).all().item<bool>(), Is.True);

        using var reader = SafetensorsReader.Open(path);
        Assert.That(reader.GetInfo("logit_scale").Shape, Is.Empty, "a scalar");
        Assert.That(reader.Metadata["kind"], Is.EqualTo("zeroshot"));
    }

    [Test]
    public void Load_OfTheOtherKind_NamesTheFile()
    {
        using var scope = NewDisposeScope();
        var path = _dir.File("head.safetensors");
        using (var head = new ZeroShotHead(ones(2, 3), 0, ["a", "b"])) head.Save(path);
        var e = Assert.Throws<InvalidDataException>(() => LinearHead.Load(path));
        Assert.That(e!.Message, Does.StartWith(path).And.Contain("holds a zeroshot head; a linear head was expected"));
        using var loaded = ClassificationHead.Load(path, CPU);
        Assert.That(loaded.Kind, Is.EqualTo(ClassificationHeadKind.ZeroShot));
    }

    [Test]
    public void Load_MissingFile_NamesIt()
    {
        var path = _dir.File("absent.safetensors");
        var e = Assert.Throws<FileNotFoundException>(() => ClassificationHead.Load(path));
        Assert.That(e!.Message, Does.StartWith(path));
    }

    [Test]
    public void Load_NotSafetensors_NamesTheFile()
    {
        var path = _dir.File("garbage.safetensors");
        File.WriteAllBytes(path, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        var e = Assert.Throws<CheckpointFormatException>(() => ClassificationHead.Load(path));
        Assert.That(e!.Message, Does.StartWith(path));
    }

    private static IEnumerable<TestCaseData> MalformedFiles()
    {
        Dictionary<string, string> Meta(string kind, string names = "[\"a\",\"b\"]") => new() { ["kind"] = kind, ["class_names"] = names };
        Dictionary<string, Tensor> Linear() => new() { ["weight"] = ones(2, 3), ["bias"] = zeros(2) };
        Dictionary<string, Tensor> ZeroShot() => new() { ["weight"] = ones(2, 3), ["logit_scale"] = tensor(4.6f) };
        Dictionary<string, Tensor> With(Dictionary<string, Tensor> t, string name, Tensor? value)
        {
            if (value is null) t.Remove(name); else t[name] = value;
            return t;
        }

        yield return new TestCaseData(Linear(), new Dictionary<string, string> { ["class_names"] = "[\"a\",\"b\"]" }, "metadata 'kind' is missing").SetName("NoKind");
        yield return new TestCaseData(Linear(), Meta("softmax"), "'linear' or 'zeroshot' was expected").SetName("UnknownKind");
        yield return new TestCaseData(Linear(), new Dictionary<string, string> { ["kind"] = "linear" }, "metadata 'class_names' is missing").SetName("NoClassNames");
        yield return new TestCaseData(Linear(), Meta("linear", "a, b"), "metadata 'class_names' is not a JSON array of strings").SetName("ClassNamesNotJson");
        yield return new TestCaseData(Linear(), Meta("linear", "[\"a\",null]"), "not a JSON array of strings").SetName("ClassNameNull");
        yield return new TestCaseData(Linear(), Meta("linear", "[\"a\",\"a\"]"), "'a' appears twice").SetName("DuplicateClassNames");
        yield return new TestCaseData(Linear(), Meta("linear", "[\"a\",\"b\",\"c\"]"), "tensor 'weight' (linear head weight) has shape [2, 3]; expected [3, D]").SetName("WeightRowsDifferFromNames");
        yield return new TestCaseData(With(Linear(), "weight", null), Meta("linear"), "tensor 'weight' (linear head weight) is missing").SetName("NoWeight");
        yield return new TestCaseData(With(Linear(), "weight", ones(6)), Meta("linear"), "has shape [6]").SetName("WeightNotAMatrix");
        yield return new TestCaseData(With(Linear(), "weight", ones(2, 3, ScalarType.Int32)), Meta("linear"), "has dtype I32").SetName("IntegerWeight");
        yield return new TestCaseData(With(Linear(), "weight", tensor(new float[,] { { 1, float.NaN, 0 }, { 0, 0, 0 } })), Meta("linear"), "holds NaN or infinite values").SetName("NaNWeight");
        yield return new TestCaseData(With(Linear(), "bias", zeros(3)), Meta("linear"), "tensor 'bias' (bias) has shape [3]; expected [2]").SetName("BiasWrongShape");
        yield return new TestCaseData(With(Linear(), "logit_scale", tensor(1f)), Meta("linear"), "unexpected tensor(s) 'logit_scale' in a linear head").SetName("UnexpectedTensor");
        yield return new TestCaseData(With(ZeroShot(), "logit_scale", null), Meta("zeroshot"), "tensor 'logit_scale'").SetName("NoLogitScale");
        yield return new TestCaseData(With(ZeroShot(), "logit_scale", ones(2)), Meta("zeroshot"), "has shape [2]; expected a scalar").SetName("LogitScaleNotScalar");
        yield return new TestCaseData(ZeroShot(), new Dictionary<string, string>(Meta("zeroshot")) { ["templates"] = "{}" }, "metadata 'templates' is not a JSON array").SetName("TemplatesNotAnArray");
    }

    [TestCaseSource(nameof(MalformedFiles))]
    public void Load_MalformedFile_SaysWhatIsWrongAndNamesTheFile(Dictionary<string, Tensor> tensors, Dictionary<string, string> metadata, string expected)
    {
        var path = _dir.File("bad.safetensors");
        SafetensorsWriter.Save(path, tensors, metadata);
        var e = Assert.Throws<InvalidDataException>(() => ClassificationHead.Load(path));
        Assert.That(e!.Message, Does.StartWith(path).And.Contain(expected));
    }

    [Test]
    public void Load_AcceptsHalfPrecisionAndOneElementScale()
    {
        using var scope = NewDisposeScope();
        var path = _dir.File("half.safetensors");
        var embeddings = tensor(new float[,] { { 0.6f, 0.8f }, { 0, 1 } });
        SafetensorsWriter.Save(path, new Dictionary<string, Tensor> { ["weight"] = embeddings.to(ScalarType.Float16), ["logit_scale"] = tensor(new[] { 2f }) },
            new Dictionary<string, string> { ["kind"] = "zeroshot", ["class_names"] = "[\"x\",\"y\"]" });
        using var head = ZeroShotHead.Load(path);
        Assert.That(head.LogitScale, Is.EqualTo(2));
        Assert.That(head.Templates, Is.Empty);
        Assert.That(Values(head.Logits(tensor(new float[,] { { 0, 3 } }))), Is.EqualTo(new[] { 0.8 * Math.Exp(2), Math.Exp(2) }).Within(1e-2));
    }

    [Test]
    public void LoadedHead_OutlivesTheDisposeScopeItWasLoadedIn()
    {
        var path = _dir.File("head.safetensors");
        using (var scope = NewDisposeScope())
        using (var head = new LinearHead(ones(2, 3), zeros(2), ["a", "b"]))
            head.Save(path);
        ClassificationHead loaded;
        using (var scope = NewDisposeScope())
            loaded = ClassificationHead.Load(path);
        using (loaded)
        using (var scope = NewDisposeScope())
            Assert.That(Values(loaded.Logits(ones(1, 3))), Is.EqualTo(new[] { 3.0, 3 }));
    }

    [Test]
    public void ToOnnxHead_MatchesLogits([Values] ClassificationHeadKind kind)
    {
        using var scope = NewDisposeScope();
        var generator = new TorchSharp.torch.Generator(13);
        using ClassificationHead head = kind == ClassificationHeadKind.Linear
            ? new LinearHead(randn(5, 7, generator: generator), randn(5, generator: generator), ["a", "b", "c", "d", "e"])
            : new ZeroShotHead(randn(5, 7, generator: generator), Math.Log(100), ["a", "b", "c", "d", "e"]);

        var onnx = head.ToOnnxHead();
        Assert.That((onnx.Classes, onnx.EmbeddingDim), Is.EqualTo((5, 7)));
        var builder = new OnnxGraphBuilder("head");
        var input = builder.AddInput("embeds", OnnxElementType.Float, "batch", 7);
        builder.AddOutput(onnx.Append(builder, input), "logits", OnnxElementType.Float, "batch", 5);

        var embeds = randn(3, 7, generator: generator);
        var output = Run(builder.ToBytes(), ("embeds", embeds.data<float>().ToArray(), [3, 7]))["logits"];
        var expected = head.Logits(embeds).data<float>().ToArray();
        Assert.That(output.Shape, Is.EqualTo(new long[] { 3, 5 }));
        Assert.That(RelativeError(output.Data, expected), Is.LessThan(1e-5));
    }

    // Helpers shared by the head tests.

    /// <summary>
    /// The tiny CLIP of <see cref="TinyClip"/> with a text tower that fits the test BPE vocabulary of
    /// <see cref="Text.TestBpeFiles"/> (528 ids, end of text 527) and a 16-token context.
    /// </summary>
    internal static ClipConfig TinyClipForTestVocabulary()
    {
        var config = TinyClip.Config();
        return config with { Text = config.Text! with { VocabularySize = 528, EndOfTextTokenId = 527, ContextLength = 16 } };
    }

    /// <summary>Values of a float tensor, row-major, as doubles.</summary>
    internal static double[] Values(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().to(ScalarType.Float64, CPU).contiguous().data<double>().ToArray();
    }

    /// <summary>Collects progress reports synchronously (<see cref="Progress{T}"/> would post them later).</summary>
    internal sealed class ListProgress : IProgress<double>
    {
        public List<double> Reports { get; } = [];

        public void Report(double value) => Reports.Add(value);
    }
}
