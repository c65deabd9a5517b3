using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Models;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Microsoft.ML.TaskVectors.Tests.Onnx;

/// <summary>
/// A tiny random CLIP vision tower (32 px images, 8 px patches, width 32, 2 layers, 4 heads, MLP 64,
/// projection 16) in Hugging Face names, and an independent float64 reference forward pass written
/// with TorchSharp's functional ops.
/// </summary>
internal sealed class TinyClipVision : IDisposable
{
    public TinyClipVision(ClipActivation activation = ClipActivation.QuickGelu, long seed = 7)
    {
        Config = new ClipConfig(new ClipVisionConfig(32, 8, 32, 2, 4, 64, activation, 1e-5), null, 16);
        Weights = Random(Config, seed);
    }

    public ClipConfig Config { get; }

    /// <summary>float32 weights in Hugging Face names.</summary>
    public Dictionary<string, Tensor> Weights { get; }

    public static Dictionary<string, Tensor> Random(ClipConfig config, long seed)
    {
        var v = config.Vision;
        using var g = new Generator((ulong)seed);
        // Scales that keep activations O(1), so every op (softmax, GELU, LayerNorm) matters to the result.
        Tensor R(double scale, params long[] shape) => (randn(shape, generator: g) * scale).to(ScalarType.Float32);
        Tensor Ln(long w) => (1 + 0.2 * randn([w], generator: g)).to(ScalarType.Float32);
        double wScale = 1 / Math.Sqrt(v.Width), mScale = 1 / Math.Sqrt(v.MlpWidth);
        var t = new Dictionary<string, Tensor>
        {
            ["vision_model.embeddings.class_embedding"] = R(1, v.Width),
            ["vision_model.embeddings.patch_embedding.weight"] = R(0.1, v.Width, 3, v.PatchSize, v.PatchSize),
            ["vision_model.embeddings.position_embedding.weight"] = R(0.5, v.Tokens, v.Width),
            // A buffer real checkpoints carry; the export ignores it.
            ["vision_model.embeddings.position_ids"] = arange(v.Tokens).reshape(1, v.Tokens),
            ["vision_model.pre_layrnorm.weight"] = Ln(v.Width),
            ["vision_model.pre_layrnorm.bias"] = R(0.1, v.Width),
            ["vision_model.post_layernorm.weight"] = Ln(v.Width),
            ["vision_model.post_layernorm.bias"] = R(0.1, v.Width),
            ["visual_projection.weight"] = R(wScale, config.ProjectionDim, v.Width),
        };
        for (int i = 0; i < v.Layers; i++)
        {
            var p = $"vision_model.encoder.layers.{i}.";
            t[p + "layer_norm1.weight"] = Ln(v.Width);
            t[p + "layer_norm1.bias"] = R(0.1, v.Width);
            t[p + "layer_norm2.weight"] = Ln(v.Width);
            t[p + "layer_norm2.bias"] = R(0.1, v.Width);
            // q and k larger than usual so attention is far from uniform.
            foreach (var (proj, scale) in new[] { ("q_proj", 3 * wScale), ("k_proj", 3 * wScale), ("v_proj", wScale), ("out_proj", wScale) })
            {
                t[p + "self_attn." + proj + ".weight"] = R(scale, v.Width, v.Width);
                t[p + "self_attn." + proj + ".bias"] = R(0.1, v.Width);
            }
            t[p + "mlp.fc1.weight"] = R(2 * wScale, v.MlpWidth, v.Width);
            t[p + "mlp.fc1.bias"] = R(0.1, v.MlpWidth);
            t[p + "mlp.fc2.weight"] = R(mScale, v.Width, v.MlpWidth);
            t[p + "mlp.fc2.bias"] = R(0.1, v.Width);
        }
        return t;
    }

    /// <summary>Writes a Hugging Face model folder (config.json + model.safetensors) and returns its path.</summary>
    public string WriteFolder(TempDirectory dir, string name, IReadOnlyDictionary<string, Tensor>? weights = null)
    {
        var folder = Path.Combine(dir.Path, name);
        Directory.CreateDirectory(folder);
        SafetensorsWriter.Save(Path.Combine(folder, "model.safetensors"), weights ?? Weights);
        File.WriteAllText(Path.Combine(folder, ClipConfig.HuggingFaceConfigFile), Config.ToHuggingFaceJson());
        return folder;
    }

    /// <summary>The same weights under OpenAI/open_clip names (fused in_proj, transposed visual.proj).</summary>
    public static Dictionary<string, Tensor> ToOpenClipNames(IReadOnlyDictionary<string, Tensor> hf, int layers)
    {
        var t = new Dictionary<string, Tensor>
        {
            ["visual.class_embedding"] = hf["vision_model.embeddings.class_embedding"],
            ["visual.conv1.weight"] = hf["vision_model.embeddings.patch_embedding.weight"],
            ["visual.positional_embedding"] = hf["vision_model.embeddings.position_embedding.weight"],
            ["visual.ln_pre.weight"] = hf["vision_model.pre_layrnorm.weight"],
            ["visual.ln_pre.bias"] = hf["vision_model.pre_layrnorm.bias"],
            ["visual.ln_post.weight"] = hf["vision_model.post_layernorm.weight"],
            ["visual.ln_post.bias"] = hf["vision_model.post_layernorm.bias"],
            ["visual.proj"] = hf["visual_projection.weight"].t().contiguous(),
        };
        for (int i = 0; i < layers; i++)
        {
            var p = $"vision_model.encoder.layers.{i}.";
            var o = $"visual.transformer.resblocks.{i}.";
            t[o + "ln_1.weight"] = hf[p + "layer_norm1.weight"];
            t[o + "ln_1.bias"] = hf[p + "layer_norm1.bias"];
            t[o + "ln_2.weight"] = hf[p + "layer_norm2.weight"];
            t[o + "ln_2.bias"] = hf[p + "layer_norm2.bias"];
            t[o + "attn.in_proj_weight"] = cat([hf[p + "self_attn.q_proj.weight"], hf[p + "self_attn.k_proj.weight"], hf[p + "self_attn.v_proj.weight"]], 0);
            t[o + "attn.in_proj_bias"] = cat([hf[p + "self_attn.q_proj.bias"], hf[p + "self_attn.k_proj.bias"], hf[p + "self_attn.v_proj.bias"]], 0);
            t[o + "attn.out_proj.weight"] = hf[p + "self_attn.out_proj.weight"];
            t[o + "attn.out_proj.bias"] = hf[p + "self_attn.out_proj.bias"];
            t[o + "mlp.c_fc.weight"] = hf[p + "mlp.fc1.weight"];
            t[o + "mlp.c_fc.bias"] = hf[p + "mlp.fc1.bias"];
            t[o + "mlp.c_proj.weight"] = hf[p + "mlp.fc2.weight"];
            t[o + "mlp.c_proj.bias"] = hf[p + "mlp.fc2.bias"];
        }
        return t;
    }

    /// <summary>Random preprocessed pixels [batch, 3, 32, 32].</summary>
    public float[] Pixels(int batch, long seed)
    {
        using var g = new Generator((ulong)seed);
        using var p = randn([batch, 3, Config.Vision.ImageSize, Config.Vision.ImageSize], generator: g);
        return p.data<float>().ToArray();
    }

    public long[] PixelShape(int batch) => [batch, 3, Config.Vision.ImageSize, Config.Vision.ImageSize];

    /// <summary>
    /// The reference image embeddings [batch, D] in float64: conv patches, class token, positions,
    /// pre-LayerNorm, pre-LN blocks with multi-head attention, post-LayerNorm of the class token, projection.
    /// </summary>
    public Tensor Reference(float[] pixels, int batch, IReadOnlyDictionary<string, Tensor>? weights = null)
    {
        weights ??= Weights;
        var v = Config.Vision;
        using var scope = NewDisposeScope();
        Tensor W(string name) => weights[name].to(ScalarType.Float64);
        long width = v.Width, heads = v.Heads, hw = v.HeadWidth, tokens = v.Tokens;
        double eps = v.LayerNormEps;
        Tensor Ln(Tensor x, string p) => F.layer_norm(x, [width], W(p + ".weight"), W(p + ".bias"), eps);
        Tensor Lin(Tensor x, string p) => F.linear(x, W(p + ".weight"), W(p + ".bias"));

        var px = tensor(pixels).reshape(PixelShape(batch)).to(ScalarType.Float64);
        var patches = F.conv2d(px, W("vision_model.embeddings.patch_embedding.weight"), strides: [v.PatchSize, v.PatchSize]);
        patches = patches.flatten(2).transpose(1, 2);                                       // [B, T-1, W]
        var cls = W("vision_model.embeddings.class_embedding").reshape(1, 1, width).expand(batch, 1, width);
        var x = cat([cls, patches], 1) + W("vision_model.embeddings.position_embedding.weight");
        x = Ln(x, "vision_model.pre_layrnorm");
        for (int i = 0; i < v.Layers; i++)
        {
            var p = $"vision_model.encoder.layers.{i}.";
            var h = Ln(x, p + "layer_norm1");
            Tensor Heads(string proj) => Lin(h, p + "self_attn." + proj).reshape(batch, tokens, heads, hw).transpose(1, 2);
            var q = Heads("q_proj");
            var k = Heads("k_proj");
            var val = Heads("v_proj");
            var attention = F.softmax(q.matmul(k.transpose(-2, -1)) / Math.Sqrt(hw), -1);
            var context = attention.matmul(val).transpose(1, 2).reshape(batch, tokens, width);
            x = x + Lin(context, p + "self_attn.out_proj");
            h = Lin(Ln(x, p + "layer_norm2"), p + "mlp.fc1");
            h = v.Activation == ClipActivation.QuickGelu ? h * sigmoid(1.702 * h) : F.gelu(h);
            x = x + Lin(h, p + "mlp.fc2");
        }
        var pooled = Ln(x.select(1, 0), "vision_model.post_layernorm");
        return pooled.matmul(W("visual_projection.weight").t()).MoveToOuterDisposeScope();
    }

    public static float[] Floats(Tensor t)
    {
        using var f = t.to(ScalarType.Float32).contiguous();
        return f.data<float>().ToArray();
    }

    public void Dispose()
    {
        foreach (var t in Weights.Values) t.Dispose();
    }
}
