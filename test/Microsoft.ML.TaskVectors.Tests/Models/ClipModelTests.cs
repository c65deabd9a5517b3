using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Models;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Microsoft.ML.TaskVectors.Tests.Models;

public class ClipModelTests
{
    // An independent forward: a real convolution, explicit attention with an explicit mask, no shared code.
    private static Tensor ReferenceLayer(IReadOnlyDictionary<string, Tensor> w, string p, Tensor x, int heads, ClipActivation act, bool causal)
    {
        long b = x.shape[0], t = x.shape[1], width = x.shape[2], d = width / heads;
        Tensor Lin(Tensor h, string n) => h.matmul(w[n + ".weight"].t()) + w[n + ".bias"];
        Tensor Ln(Tensor h, string n)
        {
            var mean = h.mean([-1L], keepdim: true);
            var variance = (h - mean).pow(2).mean([-1L], keepdim: true);
            return (h - mean) / (variance + 1e-5).sqrt() * w[n + ".weight"] + w[n + ".bias"];
        }
        var h = Ln(x, p + ".layer_norm1");
        var q = Lin(h, p + ".self_attn.q_proj").view(b, t, heads, d).permute(0, 2, 1, 3);
        var k = Lin(h, p + ".self_attn.k_proj").view(b, t, heads, d).permute(0, 2, 1, 3);
        var v = Lin(h, p + ".self_attn.v_proj").view(b, t, heads, d).permute(0, 2, 1, 3);
        var scores = q.matmul(k.transpose(2, 3)) / Math.Sqrt(d);
        if (causal) scores = scores + ones(t, t).triu(1) * -1e9;
        var a = scores.softmax(-1).matmul(v).permute(0, 2, 1, 3).reshape(b, t, width);
        x = x + Lin(a, p + ".self_attn.out_proj");
        var m = Lin(Ln(x, p + ".layer_norm2"), p + ".mlp.fc1");
        m = act == ClipActivation.QuickGelu ? m * (m * 1.702).sigmoid() : 0.5 * m * (1 + (m / Math.Sqrt(2)).erf());
        return x + Lin(m, p + ".mlp.fc2");
    }

    internal static Tensor ReferenceImageEmbeds(ClipModel model, Tensor pixels)
    {
        var w = model.Tensors();
        var c = model.Config.Vision;
        var x = F.conv2d(pixels, w["vision_model.embeddings.patch_embedding.weight"], strides: [c.PatchSize, c.PatchSize]);
        x = x.flatten(2).transpose(1, 2);
        var cls = w["vision_model.embeddings.class_embedding"].view(1, 1, -1).expand(x.shape[0], 1, c.Width);
        x = cat([cls, x], 1) + w["vision_model.embeddings.position_embedding.weight"];
        x = F.layer_norm(x, [c.Width], w["vision_model.pre_layrnorm.weight"], w["vision_model.pre_layrnorm.bias"]);
        for (int i = 0; i < c.Layers; i++) x = ReferenceLayer(w, $"vision_model.encoder.layers.{i}", x, c.Heads, c.Activation, false);
        var pooled = F.layer_norm(x[.., 0], [c.Width], w["vision_model.post_layernorm.weight"], w["vision_model.post_layernorm.bias"]);
        return pooled.matmul(w["visual_projection.weight"].t());
    }

    [TestCase(ClipActivation.QuickGelu)]
    [TestCase(ClipActivation.Gelu)]
    public void VisionTowerMatchesAnIndependentForward(ClipActivation activation)
    {
        using var scope = NewDisposeScope();
        using var model = ClipModel.CreateRandom(TinyClip.Config(activation), seed: 1);
        var pixels = randn(3, 3, 16, 16, generator: new Generator(2));
        using var output = model.Vision.Encode(pixels, model.Vision.OwnWeights());
        Assert.That(output.ImageEmbeds.shape, Is.EqualTo(new long[] { 3, 12 }));
        Assert.That(output.Pooled.shape, Is.EqualTo(new long[] { 3, 16 }));
        var expected = ReferenceImageEmbeds(model, pixels);
        Assert.That(output.ImageEmbeds.allclose(expected, rtol: 1e-4, atol: 1e-5), Is.True);
        Assert.That(model.EncodeImage(pixels).allclose(expected, rtol: 1e-4, atol: 1e-5), Is.True);
    }

    [Test]
    public void TextTowerPoolsAtTheFirstEndOfTextTokenWithACausalMask()
    {
        using var scope = NewDisposeScope();
        var config = TinyClip.Config();
        using var model = ClipModel.CreateRandom(config, seed: 3);
        var ids = tensor(new long[,] { { 38, 5, 6, 39, 0, 0 }, { 38, 7, 39, 0, 0, 0 } });
        var embeds = model.EncodeText(ids);
        Assert.That(embeds.shape, Is.EqualTo(new long[] { 2, 12 }));

        var w = model.Tensors();
        var t = config.Text!;
        var x = w["text_model.embeddings.token_embedding.weight"][ids] + w["text_model.embeddings.position_embedding.weight"][..6];
        for (int i = 0; i < t.Layers; i++) x = ReferenceLayer(w, $"text_model.encoder.layers.{i}", x, t.Heads, t.Activation, true);
        x = F.layer_norm(x, [t.Width], w["text_model.final_layer_norm.weight"], w["text_model.final_layer_norm.bias"]);
        var pooled = stack([x[0, 3], x[1, 2]]);
        Assert.That(embeds.allclose(pooled.matmul(w["text_projection.weight"].t()), rtol: 1e-4, atol: 1e-5), Is.True);

        // Causal: tokens after the end token (padding) cannot change the result.
        var padded = tensor(new long[,] { { 38, 5, 6, 39, 11, 12 }, { 38, 7, 39, 13, 1, 2 } });
        Assert.That(model.EncodeText(padded).allclose(embeds, rtol: 1e-5, atol: 1e-6), Is.True);
        Assert.Throws<ArgumentException>(() => model.EncodeText(tensor(new long[,] { { 38, 5, 6 } })));
    }

    [TestCase(ClipNaming.HuggingFace, TensorDType.F32, 1e-6)]
    [TestCase(ClipNaming.OpenClip, TensorDType.F32, 1e-6)]
    [TestCase(ClipNaming.HuggingFace, TensorDType.F16, 2e-2)]
    [TestCase(ClipNaming.OpenClip, TensorDType.BF16, 1e-1)]
    public void FoldersRoundTripInEitherNamingAndDtype(ClipNaming naming, TensorDType dtype, double tolerance)
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDirectory();
        using var model = ClipModel.CreateRandom(TinyClip.Config(), seed: 4);
        model.Save(dir.Path, naming, dtype);
        Assert.That(File.Exists(dir.File(naming == ClipNaming.OpenClip ? "open_clip_config.json" : "config.json")), Is.True);
        using (var raw = Checkpoint.Open(dir.Path))
        {
            Assert.That(raw.Contains(naming == ClipNaming.OpenClip ? "visual.transformer.resblocks.0.attn.in_proj_weight" : "vision_model.encoder.layers.0.self_attn.q_proj.weight"), Is.True);
            if (naming == ClipNaming.OpenClip) Assert.That(raw.GetInfo("visual.proj").Shape, Is.EqualTo(new long[] { 16, 12 }));
        }
        using var loaded = ClipModel.Load(dir.Path);
        Assert.That(loaded.Config, Is.EqualTo(model.Config));
        var pixels = randn(2, 3, 16, 16, generator: new Generator(5));
        var ids = tensor(new long[,] { { 38, 5, 6, 39 } });
        Assert.That(loaded.EncodeImage(pixels).allclose(model.EncodeImage(pixels), rtol: tolerance, atol: tolerance), Is.True);
        Assert.That(loaded.EncodeText(ids).allclose(model.EncodeText(ids), rtol: tolerance, atol: tolerance), Is.True);
    }

    [Test]
    public void OpenClipFusedProjectionsSplitIntoQueryKeyValueRows()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDirectory();
        using var model = ClipModel.CreateRandom(TinyClip.Config(), seed: 6);
        model.Save(dir.Path, ClipNaming.OpenClip);
        using var view = ClipCheckpoint.Open(dir.Path);
        Assert.That(view.Naming, Is.EqualTo(ClipNaming.OpenClip));
        using var raw = Checkpoint.Open(dir.Path);
        var fused = raw.Read("visual.transformer.resblocks.1.attn.in_proj_weight");
        Assert.That(view.Read("vision_model.encoder.layers.1.self_attn.k_proj.weight").eq(fused[16..32]).all().item<bool>(), Is.True);
        Assert.That(view.Read("visual_projection.weight").eq(raw.Read("visual.proj").t()).all().item<bool>(), Is.True);
    }

    [Test]
    public void LoadListsEveryMissingOrMisshapenTensor()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDirectory();
        using var model = ClipModel.CreateRandom(TinyClip.Config(), seed: 7);
        var tensors = model.Tensors().ToDictionary(kv => kv.Key, kv => kv.Value.detach());
        tensors.Remove("vision_model.post_layernorm.bias");
        tensors["vision_model.pre_layrnorm.weight"] = zeros(5);
        SafetensorsWriter.Save(dir.File("model.safetensors"), tensors);
        File.WriteAllText(dir.File("config.json"), model.Config.ToHuggingFaceJson());
        var e = Assert.Throws<InvalidDataException>(() => ClipModel.Load(dir.Path))!;
        Assert.That(e.Message, Does.Contain("'vision_model.post_layernorm.bias' is missing"));
        Assert.That(e.Message, Does.Contain("'vision_model.pre_layrnorm.weight' has shape [5]"));
        Assert.That(e.Message, Does.Contain(dir.Path));
    }

    [Test]
    public void ConfigurationsParseFromBothFormats()
    {
        var hf = ClipConfig.FromHuggingFace(ClipConfig.VitB32.ToHuggingFaceJson());
        Assert.That(hf, Is.EqualTo(ClipConfig.VitB32));
        Assert.That(hf.Vision.Tokens, Is.EqualTo(50));
        var oc = ClipConfig.FromOpenClip("""
            {"model_cfg": {"embed_dim": 768, "quick_gelu": false,
              "vision_cfg": {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 14},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 768, "heads": 12, "layers": 12}}}
            """);
        Assert.That(oc.Vision, Is.EqualTo(ClipConfig.VitL14.Vision with { Activation = ClipActivation.Gelu }));
        Assert.That(oc.Vision.Heads, Is.EqualTo(16));
        Assert.That(oc.ProjectionDim, Is.EqualTo(768));
        Assert.That(ClipConfig.FromOpenClip(TinyClip.Config().ToOpenClipJson()), Is.EqualTo(TinyClip.Config()));
        var bad = Assert.Throws<InvalidDataException>(() => ClipConfig.FromHuggingFace("""{"vision_config": {"hidden_size": 10, "num_attention_heads": 3}}""", "x/config.json"))!;
        Assert.That(bad.Message, Does.StartWith("x/config.json:"));
        Assert.Throws<InvalidDataException>(() => ClipConfig.FromHuggingFace("""{"vision_config": {"hidden_act": "relu"}}"""));
    }
}
