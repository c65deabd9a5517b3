using System.Globalization;
using Microsoft.ML.TaskVectors.Images;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Tests.Models;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Cli;

public class EmbedAndExportCommandTests
{
    private static string[] WriteImages(string folder)
    {
        var rng = new Random(3);
        var paths = new List<string>();
        foreach (var name in new[] { "b/two.png", "a/one.png", "c.jpg" })
        {
            var pixels = new byte[20 * 24 * 3];
            rng.NextBytes(pixels);
            var path = Path.Combine(folder, name);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            new RgbImage(20, 24, pixels).Save(path + ".png");
            File.Move(path + ".png", path); // a PNG named .jpg still decodes: the decoder sniffs the content
            paths.Add(path);
        }
        return paths.Order(StringComparer.Ordinal).ToArray();
    }

    private static (string Path, float[] Values)[] ReadCsv(string file) =>
        File.ReadAllLines(file).Select(line =>
        {
            var fields = line.Split(',');
            return (fields[0], fields[1..].Select(v => float.Parse(v, CultureInfo.InvariantCulture)).ToArray());
        }).ToArray();

    [Test]
    public void EmbedWritesOneRowPerImageSortedByPathWithTorchSharpAndOnnxAgreeing()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDirectory();
        var modelFolder = dir.File("model");
        using var model = ClipModel.CreateRandom(TinyClip.Config(), seed: 21);
        model.Save(modelFolder, ClipNaming.OpenClip);
        var images = dir.File("images");
        var expectedOrder = WriteImages(images);

        var (code, _, error) = CliRunner.Run("embed", "--model", modelFolder, "--images", images, "--out", dir.File("torch.csv"));
        Assert.That(code, Is.EqualTo(0), error);
        var rows = ReadCsv(dir.File("torch.csv"));
        Assert.That(rows.Select(r => r.Path), Is.EqualTo(expectedOrder));
        Assert.That(rows.All(r => r.Values.Length == 12), Is.True);

        // Independently: preprocess, then the model's forward.
        var pre = ClipImagePreprocessor.For(model.Config.Vision);
        var expected = model.EncodeImage(pre.ToTensor(expectedOrder.Select(RgbImage.Load).ToArray()));
        for (int i = 0; i < rows.Length; i++)
            Assert.That(rows[i].Values, Is.EqualTo(expected[i].data<float>().ToArray()).Within(1e-5));

        (code, _, error) = CliRunner.Run("export-onnx", "--model", modelFolder, "--out", dir.File("model.onnx"));
        Assert.That(code, Is.EqualTo(0), error);
        (code, _, error) = CliRunner.Run("embed", "--model", modelFolder, "--images", images, "--onnx", dir.File("model.onnx"), "--out", dir.File("onnx.csv"));
        Assert.That(code, Is.EqualTo(0), error);
        var onnxRows = ReadCsv(dir.File("onnx.csv"));
        for (int i = 0; i < rows.Length; i++)
        {
            Assert.That(onnxRows[i].Path, Is.EqualTo(rows[i].Path));
            for (int j = 0; j < 12; j++)
                Assert.That(onnxRows[i].Values[j], Is.EqualTo(rows[i].Values[j]).Within(1e-4 * Math.Max(1, Math.Abs(rows[i].Values[j]))));
        }

        // Single files keep the order given.
        (code, var stdout, error) = CliRunner.Run("embed", "--model", modelFolder, "--image", expectedOrder[2], expectedOrder[0]);
        Assert.That(code, Is.EqualTo(0), error);
        Assert.That(stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(',')[0]), Is.EqualTo(new[] { expectedOrder[2], expectedOrder[0] }));
    }

    [Test]
    public void ExportOnnxWithMergedWeightsMatchesTheMergedModel()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDirectory();
        using var model = ClipModel.CreateRandom(TinyClip.Config(), seed: 22);
        model.Save(dir.File("base"));
        using var other = ClipModel.CreateRandom(TinyClip.Config(), seed: 23, withText: false);
        other.Save(dir.File("merged"));
        var (code, _, error) = CliRunner.Run("export-onnx", "--model", dir.File("base"), "--weights", dir.File("merged/model.safetensors"), "--out", dir.File("m.onnx"));
        Assert.That(code, Is.EqualTo(0), error);
        using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(dir.File("m.onnx"));
        var pixels = randn(2, 3, 16, 16, generator: new Generator(1));
        var input = new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(pixels.data<float>().ToArray(), [2, 3, 16, 16]);
        using var results = session.Run([Microsoft.ML.OnnxRuntime.NamedOnnxValue.CreateFromTensor("pixel_values", input)]);
        var onnx = results.First(r => r.Name == "image_embeds").AsEnumerable<float>().ToArray();
        Assert.That(onnx, Is.EqualTo(other.EncodeImage(pixels).data<float>().ToArray()).Within(1e-4));
    }

    private static float[] OnnxOutput(string file, string output, Tensor pixels)
    {
        using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(file);
        var input = new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(pixels.data<float>().ToArray(), pixels.shape.Select(d => (int)d).ToArray());
        using var results = session.Run([Microsoft.ML.OnnxRuntime.NamedOnnxValue.CreateFromTensor("pixel_values", input)]);
        return results.First(r => r.Name == output).AsEnumerable<float>().ToArray();
    }

    [Test]
    public void ExportOnnxAppendsLinearAndZeroShotHeads()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDirectory();
        var folder = Text.TestBpeFiles.WriteHuggingFace(dir, "model");
        using var model = ClipModel.CreateRandom(Heads.ClassificationHeadTests.TinyClipForTestVocabulary(), seed: 24);
        model.Save(folder);
        var pixels = randn(3, 3, 16, 16, generator: new Generator(2));
        var embeds = model.EncodeImage(pixels);

        using var linear = new Microsoft.ML.TaskVectors.Heads.LinearHead(randn(4, 12, generator: new Generator(3)), randn(4, generator: new Generator(4)), ["a", "b", "c", "d"]);
        linear.Save(dir.File("head.safetensors"));
        var (code, _, error) = CliRunner.Run("export-onnx", "--model", folder, "--head", "linear:" + dir.File("head.safetensors"), "--out", dir.File("linear.onnx"));
        Assert.That(code, Is.EqualTo(0), error);
        Assert.That(OnnxOutput(dir.File("linear.onnx"), "logits", pixels), Is.EqualTo(linear.Logits(embeds).data<float>().ToArray()).Within(1e-3));

        File.WriteAllLines(dir.File("classes.txt"), ["cat", "dog", "", "car"]);
        (code, _, error) = CliRunner.Run("export-onnx", "--model", folder, "--head", "zeroshot:" + dir.File("classes.txt"), "--templates", "EuroSAT", "--out", dir.File("zs.onnx"));
        Assert.That(code, Is.EqualTo(0), error);
        using var zeroShot = Microsoft.ML.TaskVectors.Heads.ZeroShotHead.Build(model, Microsoft.ML.TaskVectors.Text.ClipTokenizer.FromFolder(folder), ["cat", "dog", "car"],
            Microsoft.ML.TaskVectors.Heads.PromptTemplates.For("EuroSAT"));
        Assert.That(OnnxOutput(dir.File("zs.onnx"), "logits", pixels), Is.EqualTo(zeroShot.Logits(embeds).data<float>().ToArray()).Within(1e-3));

        (code, _, error) = CliRunner.Run("export-onnx", "--model", folder, "--head", "softmax:" + dir.File("classes.txt"), "--out", dir.File("x.onnx"));
        Assert.That(code, Is.EqualTo(1));
        Assert.That(error, Does.Contain("--head: expected linear:HEAD.safetensors or zeroshot:CLASSES.txt"));
    }

    [TestCase("embed", "--model", "/nonexistent/model", "--image", "x.png")]
    [TestCase("export-onnx", "--model", "/nonexistent/model", "--out", "x.onnx")]
    public void BadInputGivesOneLineAndNonZeroExit(params string[] args)
    {
        var (code, _, error) = CliRunner.Run(args);
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(error.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(error, Does.Contain("error:"));
    }
}
