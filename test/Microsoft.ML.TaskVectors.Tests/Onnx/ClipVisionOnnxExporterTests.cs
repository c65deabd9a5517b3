using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Onnx;
using static Microsoft.ML.TaskVectors.Tests.Onnx.OnnxTestRuntime;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Microsoft.ML.TaskVectors.Tests.Onnx;

public class ClipVisionOnnxExporterTests
{
    private const double Tolerance = 1e-4;

    [TestCase(ClipActivation.QuickGelu)]
    [TestCase(ClipActivation.Gelu)]
    public void Export_MatchesReferenceForward(ClipActivation activation)
    {
        using var dir = new TempDirectory();
        using var clip = new TinyClipVision(activation);
        var folder = clip.WriteFolder(dir, "model");
        var path = dir.File("vision.onnx");

        ClipVisionOnnxExporter.Export(folder, path);

        using var session = new InferenceSession(path);
        Assert.That(session.InputMetadata.Keys, Is.EqualTo(new[] { "pixel_values" }));
        Assert.That(session.InputMetadata["pixel_values"].Dimensions, Is.EqualTo(new[] { -1, 3, 32, 32 }));
        Assert.That(session.OutputMetadata.Keys, Is.EqualTo(new[] { "image_embeds" }));
        Assert.That(session.ModelMetadata.CustomMetadataMap[ClipVisionOnnxExporter.HeadMetadataKey], Is.EqualTo("none"));
        Assert.That(ClipConfig.FromHuggingFace(session.ModelMetadata.CustomMetadataMap[ClipVisionOnnxExporter.ConfigMetadataKey]), Is.EqualTo(clip.Config));

        // Two batch sizes through one session: the batch dimension is symbolic.
        foreach (var batch in new[] { 3, 1 })
        {
            var pixels = clip.Pixels(batch, seed: 100 + batch);
            var embeds = Run(session, ("pixel_values", pixels, clip.PixelShape(batch)))["image_embeds"];
            using var expected = clip.Reference(pixels, batch);
            Assert.That(embeds.Shape, Is.EqualTo(new long[] { batch, 16 }));
            Assert.That(RelativeError(embeds.Data, TinyClipVision.Floats(expected)), Is.LessThan(Tolerance), $"batch {batch}");
        }
    }

    [Test]
    public void ReferenceForward_IsSensitiveToTheActivation()
    {
        // Guards the parity tests: the activations (which differ by at most ~0.02) must change the
        // embeddings far beyond the parity tolerance.
        using var quick = new TinyClipVision(ClipActivation.QuickGelu);
        using var exact = new TinyClipVision(ClipActivation.Gelu);
        var pixels = quick.Pixels(2, 5);
        using var a = quick.Reference(pixels, 2);
        using var b = exact.Reference(pixels, 2);
        Assert.That(RelativeError(TinyClipVision.Floats(a), TinyClipVision.Floats(b)), Is.GreaterThan(20 * Tolerance));
    }

    [Test]
    public void LinearHead_AddsLogits()
    {
        using var dir = new TempDirectory();
        using var clip = new TinyClipVision();
        using var checkpoint = ClipCheckpoint.Open(clip.WriteFolder(dir, "model"));
        using var g = new Generator(11);
        using var weight = randn([5, 16], generator: g);
        using var bias = randn([5], generator: g);
        var options = new ClipVisionOnnxExportOptions { Head = OnnxClassificationHead.Linear(weight, bias) };

        var model = ClipVisionOnnxExporter.BuildGraph(checkpoint, clip.Config, options).ToBytes();

        var pixels = clip.Pixels(2, 21);
        var outputs = Run(model, ("pixel_values", pixels, clip.PixelShape(2)));
        using var embeds = clip.Reference(pixels, 2);
        using var logits = F.linear(embeds, weight.to(ScalarType.Float64), bias.to(ScalarType.Float64));
        Assert.That(outputs["logits"].Shape, Is.EqualTo(new long[] { 2, 5 }));
        Assert.That(RelativeError(outputs["image_embeds"].Data, TinyClipVision.Floats(embeds)), Is.LessThan(Tolerance));
        Assert.That(RelativeError(outputs["logits"].Data, TinyClipVision.Floats(logits)), Is.LessThan(Tolerance));
    }

    [Test]
    public void ZeroShotHead_ScalesCosineSimilarities()
    {
        using var dir = new TempDirectory();
        using var clip = new TinyClipVision();
        using var checkpoint = ClipCheckpoint.Open(clip.WriteFolder(dir, "model"));
        using var g = new Generator(12);
        using var raw = randn([7, 16], generator: g);
        using var classes = F.normalize(raw, dim: 1);
        var options = new ClipVisionOnnxExportOptions
        {
            Head = OnnxClassificationHead.ZeroShot(classes, 100f),
            LogitsName = "scores",
        };

        var model = ClipVisionOnnxExporter.BuildGraph(checkpoint, clip.Config, options).ToBytes();

        var pixels = clip.Pixels(3, 22);
        var outputs = Run(model, ("pixel_values", pixels, clip.PixelShape(3)));
        using var embeds = clip.Reference(pixels, 3);
        using var unit = embeds / embeds.norm(1, keepdim: true);
        using var expected = 100.0 * unit.matmul(classes.to(ScalarType.Float64).t());
        Assert.That(outputs.Keys, Is.EquivalentTo(new[] { "image_embeds", "scores" }));
        Assert.That(RelativeError(outputs["scores"].Data, TinyClipVision.Floats(expected)), Is.LessThan(Tolerance));
        // Cosines are at most 1, so |logits| ≤ scale.
        Assert.That(outputs["scores"].Data.Max(Math.Abs), Is.LessThanOrEqualTo(100f + 1e-3f));
    }

    [Test]
    public void WeightOverride_ReplacesVisionTensors()
    {
        using var dir = new TempDirectory();
        using var clip = new TinyClipVision();
        using var checkpoint = ClipCheckpoint.Open(clip.WriteFolder(dir, "base"));
        // A "merged" model: every tensor of layer 1 and the projection differ; the rest is absent and comes from the base.
        var other = TinyClipVision.Random(clip.Config, seed: 99);
        var overrides = other.Where(kv => kv.Key.StartsWith("vision_model.encoder.layers.1.", StringComparison.Ordinal) || kv.Key == "visual_projection.weight")
            .ToDictionary(kv => kv.Key, kv => kv.Value);
        var overridePath = dir.File("merged.safetensors");
        SafetensorsWriter.Save(overridePath, overrides);
        using var merged = Checkpoint.Open(overridePath);

        var model = ClipVisionOnnxExporter.BuildGraph(checkpoint, clip.Config, new() { WeightOverride = merged }).ToBytes();

        var effective = new Dictionary<string, Tensor>(clip.Weights);
        foreach (var (name, t) in overrides) effective[name] = t;
        var pixels = clip.Pixels(2, 23);
        var embeds = Run(model, ("pixel_values", pixels, clip.PixelShape(2)))["image_embeds"].Data;
        using var expected = clip.Reference(pixels, 2, effective);
        using var baseline = clip.Reference(pixels, 2);
        Assert.That(RelativeError(embeds, TinyClipVision.Floats(expected)), Is.LessThan(Tolerance));
        Assert.That(RelativeError(embeds, TinyClipVision.Floats(baseline)), Is.GreaterThan(0.1), "the override changed the model");
        // The override is still usable: the exporter does not dispose it.
        Assert.That(merged.Read("visual_projection.weight").shape, Is.EqualTo(new long[] { 16, 32 }));
        foreach (var t in other.Values) t.Dispose();
    }

    [Test]
    public void OpenClipNamedCheckpoint_ExportsIdentically()
    {
        using var dir = new TempDirectory();
        using var clip = new TinyClipVision();
        var hfFolder = clip.WriteFolder(dir, "hf");
        var openClip = TinyClipVision.ToOpenClipNames(clip.Weights, clip.Config.Vision.Layers);
        var ocFolder = clip.WriteFolder(dir, "open_clip", openClip);
        using (var view = ClipCheckpoint.Open(ocFolder))
            Assert.That(view.Naming, Is.EqualTo(ClipNaming.OpenClip));

        ClipVisionOnnxExporter.Export(hfFolder, dir.File("hf.onnx"));
        ClipVisionOnnxExporter.Export(ocFolder, dir.File("oc.onnx"));

        // Same tensors under the same (Hugging Face) initializer names: the files are byte for byte equal.
        Assert.That(File.ReadAllBytes(dir.File("oc.onnx")), Is.EqualTo(File.ReadAllBytes(dir.File("hf.onnx"))));
        var pixels = clip.Pixels(2, 24);
        using var session = new InferenceSession(dir.File("oc.onnx"));
        using var expected = clip.Reference(pixels, 2);
        Assert.That(RelativeError(Run(session, ("pixel_values", pixels, clip.PixelShape(2)))["image_embeds"].Data, TinyClipVision.Floats(expected)),
            Is.LessThan(Tolerance));
        foreach (var (name, t) in openClip)
            if (name is "visual.proj" || name.Contains("in_proj", StringComparison.Ordinal)) t.Dispose();
    }

    [Test]
    public void Float16Storage_HalvesTheFile_AndStaysClose()
    {
        using var dir = new TempDirectory();
        using var clip = new TinyClipVision();
        var folder = clip.WriteFolder(dir, "model");
        ClipVisionOnnxExporter.Export(folder, dir.File("f32.onnx"));
        ClipVisionOnnxExporter.Export(folder, dir.File("f16.onnx"), new() { WeightStorage = OnnxWeightStorage.Float16 });

        long f32 = new FileInfo(dir.File("f32.onnx")).Length, f16 = new FileInfo(dir.File("f16.onnx")).Length;
        // Matrices halve; vectors (biases, LayerNorm) stay float32 and the protobuf framing remains.
        Assert.That((double)f16 / f32, Is.InRange(0.5, 0.65), $"float32 {f32} bytes, float16 {f16} bytes");
        var pixels = clip.Pixels(2, 25);
        using var expected = clip.Reference(pixels, 2);
        var embeds = Run(File.ReadAllBytes(dir.File("f16.onnx")), ("pixel_values", pixels, clip.PixelShape(2)))["image_embeds"].Data;
        var error = RelativeError(embeds, TinyClipVision.Floats(expected));
        Assert.That(error, Is.LessThan(1e-2));
        Assert.That(error, Is.GreaterThan(Tolerance / 100), "weights were really rounded to float16");
    }

    [Test]
    public void Progress_RisesToOne_AndCancellationWritesNothing()
    {
        using var dir = new TempDirectory();
        using var clip = new TinyClipVision();
        var folder = clip.WriteFolder(dir, "model");
        var reports = new List<double>();
        ClipVisionOnnxExporter.Export(folder, dir.File("a.onnx"), progress: new SyncProgress(reports.Add));
        Assert.That(reports, Is.Ordered.Ascending);
        Assert.That(reports, Has.Count.GreaterThanOrEqualTo(clip.Config.Vision.Layers + 2));
        Assert.That(reports[^1], Is.EqualTo(1.0));

        using var cts = new CancellationTokenSource();
        var cancelAfterFirst = new SyncProgress(_ => cts.Cancel());
        Assert.Throws<OperationCanceledException>(() =>
            ClipVisionOnnxExporter.Export(folder, dir.File("b.onnx"), progress: cancelAfterFirst, cancellationToken: cts.Token));
        Assert.That(File.Exists(dir.File("b.onnx")), Is.False);
    }

    [Test]
    public void BadCheckpoints_AndOptions_GetClearErrors()
    {
        using var dir = new TempDirectory();
        using var clip = new TinyClipVision();
        var weights = new Dictionary<string, Tensor>(clip.Weights);
        weights.Remove("vision_model.encoder.layers.1.mlp.fc2.bias");
        using var incomplete = ClipCheckpoint.Open(clip.WriteFolder(dir, "incomplete", weights));
        var e = Assert.Throws<InvalidDataException>(() => ClipVisionOnnxExporter.BuildGraph(incomplete, clip.Config))!;
        Assert.That(e.Message, Does.Contain("vision_model.encoder.layers.1.mlp.fc2.bias").And.Contain("[32]"));

        using var checkpoint = ClipCheckpoint.Open(clip.WriteFolder(dir, "model"));
        var wider = clip.Config with { Vision = clip.Config.Vision with { MlpWidth = 128 } };
        e = Assert.Throws<InvalidDataException>(() => ClipVisionOnnxExporter.BuildGraph(checkpoint, wider))!;
        Assert.That(e.Message, Does.Contain("mlp.fc1").And.Contain("[64, 32]").And.Contain("[128, 32]"));

        using var unrelatedTensor = ones(3);
        SafetensorsWriter.Save(dir.File("unrelated.safetensors"), new Dictionary<string, Tensor> { ["text_model.x"] = unrelatedTensor });
        using var unrelated = Checkpoint.Open(dir.File("unrelated.safetensors"));
        e = Assert.Throws<InvalidDataException>(() => ClipVisionOnnxExporter.BuildGraph(checkpoint, clip.Config, new() { WeightOverride = unrelated }))!;
        Assert.That(e.Message, Does.Contain("unrelated.safetensors").And.Contain("none of"));

        using var head = ones(4, 8);
        var ae = Assert.Throws<ArgumentException>(() => ClipVisionOnnxExporter.BuildGraph(checkpoint, clip.Config,
            new() { Head = OnnxClassificationHead.Linear(head) }))!;
        Assert.That(ae.Message, Does.Contain("8-wide").And.Contain("16"));
        ae = Assert.Throws<ArgumentException>(() => ClipVisionOnnxExporter.BuildGraph(checkpoint, clip.Config,
            new() { EmbeddingsName = "pixel_values" }))!;
        Assert.That(ae.Message, Does.Contain("'pixel_values'"));
    }

    [Test]
    public void ClassificationHeads_ValidateShapes()
    {
        using var w = ones(3, 4);
        using var badBias = ones(2);
        Assert.That(Assert.Throws<ArgumentException>(() => OnnxClassificationHead.Linear(w, badBias))!.Message, Does.Contain("[3]"));
        using var vector = ones(4);
        Assert.That(Assert.Throws<ArgumentException>(() => OnnxClassificationHead.ZeroShot(vector, 1f))!.Message, Does.Contain("[classes, D]"));
        Assert.Throws<ArgumentException>(() => OnnxClassificationHead.ZeroShot(w, float.NaN));
        Assert.Throws<ArgumentException>(() => OnnxClassificationHead.Linear(new float[7], 2));

        var head = OnnxClassificationHead.Linear([1f, 0, 0, 1, 1, 1], 3, [0f, 0, 10]);
        Assert.That((head.Kind, head.Classes, head.EmbeddingDim, head.HasBias), Is.EqualTo((OnnxClassificationHeadKind.Linear, 3, 2, true)));
        var b = new OnnxGraphBuilder();
        var e = b.AddInput("e", OnnxElementType.Float, "batch", 2);
        b.AddOutput(head.Append(b, e), OnnxElementType.Float, "batch", 3);
        var zs = OnnxClassificationHead.ZeroShot([1f, 0, 0, 1], 2, 10f);
        b.AddOutput(zs.Append(b, e, name: "zs"), OnnxElementType.Float, "batch", 2);

        var o = Run(b.ToBytes(), ("e", [3f, 4, 0, 0], [2, 2]));
        // [3,4]·Wᵀ + b = [3, 4, 17];  [0,0] → the bias
        Assert.That(o["logits"].Data, Is.EqualTo(new[] { 3f, 4, 17, 0, 0, 10 }).Within(1e-5));
        // 10·[3,4]/5 = [6, 8]; a zero embedding gives zero logits, not NaN
        Assert.That(o["zs"].Data, Is.EqualTo(new[] { 6f, 8, 0, 0 }).Within(1e-5));
    }

    private sealed class SyncProgress(Action<double> report) : IProgress<double>
    {
        public void Report(double value) => report(value);
    }
}
