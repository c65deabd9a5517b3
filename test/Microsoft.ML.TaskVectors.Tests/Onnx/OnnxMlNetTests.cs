using Microsoft.ML.Data;
using Microsoft.ML.TaskVectors.Onnx;
using static Microsoft.ML.TaskVectors.Tests.Onnx.OnnxTestRuntime;

namespace Microsoft.ML.TaskVectors.Tests.Onnx;

public class OnnxMlNetTests
{
    private sealed class Features
    {
        [ColumnName("x"), VectorType(4)]
        public float[] X { get; set; } = [];
    }

    private sealed class Scores
    {
        [ColumnName("y"), VectorType(3)]
        public float[] Y { get; set; } = [];
    }

    private sealed class Image
    {
        [ColumnName("pixel_values"), VectorType(3, 32, 32)]
        public float[] Pixels { get; set; } = [];
    }

    private sealed class Embedding
    {
        [ColumnName("image_embeds"), VectorType(16)]
        public float[] Embeds { get; set; } = [];
    }

    [Test]
    public void ApplyOnnxModel_ScoresABuiltModel_AndSurvivesSaveAndLoad()
    {
        using var dir = new TempDirectory();
        // y = sigmoid(x·Wᵀ + b) with W = [[1,0,0,0],[0,1,1,0],[1,1,1,1]], b = [0, -1, 0.5]
        var b = new OnnxGraphBuilder("mlnet");
        var x = b.AddInput("x", OnnxElementType.Float, "batch", 4);
        var w = b.AddInitializer("w", [1f, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 1], [3, 4]);
        var bias = b.AddInitializer("b", [0f, -1, 0.5f], [3]);
        b.AddOutput(b.Sigmoid(b.Gemm(x, w, bias, transB: true), name: "y"), OnnxElementType.Float, "batch", 3);
        var onnxPath = dir.File("model.onnx");
        b.Save(onnxPath);

        var ml = new MLContext(seed: 1);
        var rows = new[]
        {
            new Features { X = [1f, 2, 3, 4] },
            new Features { X = [0f, 0, 0, 0] },
            new Features { X = [-1f, 0.5f, 0.25f, 2] },
        };
        var data = ml.Data.LoadFromEnumerable(rows);
        var model = ml.Transforms.ApplyOnnxModel("y", "x", onnxPath).Fit(data);
        var scored = Read(ml, model.Transform(data));

        static float Sigmoid(float v) => 1 / (1 + MathF.Exp(-v));
        var expected = rows.Select(r => new[]
        {
            Sigmoid(r.X[0]), Sigmoid(r.X[1] + r.X[2] - 1), Sigmoid(r.X.Sum() + 0.5f),
        }).ToArray();
        for (int i = 0; i < rows.Length; i++)
            Assert.That(scored[i], Is.EqualTo(expected[i]).Within(1e-6), $"row {i}");

        // The saved pipeline carries the ONNX bytes: it loads after the .onnx file is gone.
        var zip = dir.File("pipeline.zip");
        ml.Model.Save(model, data.Schema, zip);
        File.Delete(onnxPath);
        var loaded = ml.Model.Load(zip, out var schema);
        Assert.That(schema["x"].Type.ToString(), Is.EqualTo(data.Schema["x"].Type.ToString()));
        var reloaded = Read(ml, loaded.Transform(data));
        for (int i = 0; i < rows.Length; i++)
            Assert.That(reloaded[i], Is.EqualTo(scored[i]), $"row {i} after Save/Load");
    }

    [Test]
    public void ApplyOnnxModel_RunsAnExportedClipVisionEncoder()
    {
        using var dir = new TempDirectory();
        using var clip = new TinyClipVision();
        var onnxPath = dir.File("vision.onnx");
        ClipVisionOnnxExporter.Export(clip.WriteFolder(dir, "model"), onnxPath);

        var ml = new MLContext(seed: 1);
        var images = Enumerable.Range(0, 3).Select(i => new Image { Pixels = clip.Pixels(1, 30 + i) }).ToArray();
        var data = ml.Data.LoadFromEnumerable(images);
        var model = ml.Transforms.ApplyOnnxModel("image_embeds", "pixel_values", onnxPath).Fit(data);
        var embeddings = ml.Data.CreateEnumerable<Embedding>(model.Transform(data), reuseRowObject: false).ToArray();

        var zip = dir.File("pipeline.zip");
        ml.Model.Save(model, data.Schema, zip);
        File.Delete(onnxPath);
        var loaded = ml.Model.Load(zip, out _);
        var reloaded = ml.Data.CreateEnumerable<Embedding>(loaded.Transform(data), reuseRowObject: false).ToArray();

        for (int i = 0; i < images.Length; i++)
        {
            using var expected = clip.Reference(images[i].Pixels, 1);
            Assert.That(RelativeError(embeddings[i].Embeds, TinyClipVision.Floats(expected)), Is.LessThan(1e-4), $"image {i}");
            Assert.That(reloaded[i].Embeds, Is.EqualTo(embeddings[i].Embeds), $"image {i} after Save/Load");
        }
    }

    private static float[][] Read(MLContext ml, IDataView view) =>
        ml.Data.CreateEnumerable<Scores>(view, reuseRowObject: false).Select(s => s.Y).ToArray();
}
