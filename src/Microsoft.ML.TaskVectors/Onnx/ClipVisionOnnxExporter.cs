using System.Globalization;
using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Runtime;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Onnx;

/// <summary>
/// Exports a CLIP vision encoder (Hugging Face or open_clip checkpoint) to ONNX: input
/// <c>pixel_values [batch, 3, H, W]</c> (already preprocessed), output the unnormalised
/// <c>image_embeds [batch, D]</c>, and with a head also <c>logits [batch, classes]</c>. The graph
/// uses only standard opset-17 operators, so ONNX Runtime and ML.NET's <c>ApplyOnnxModel</c> run it.
/// </summary>
public static class ClipVisionOnnxExporter
{
    /// <summary>The <c>metadata_props</c> key holding the model's configuration as Hugging Face JSON.</summary>
    public const string ConfigMetadataKey = "taskvectors.clip_config";

    /// <summary>The <c>metadata_props</c> key naming the head: <c>none</c>, <c>linear</c> or <c>zero-shot</c>.</summary>
    public const string HeadMetadataKey = "taskvectors.head";

    /// <summary>Exports the model of a folder (<c>config.json</c> or <c>open_clip_config.json</c> plus safetensors) to <paramref name="path"/>.</summary>
    /// <exception cref="FileNotFoundException">The folder holds no configuration or checkpoint.</exception>
    /// <exception cref="InvalidDataException">A tensor is missing or has the wrong shape; the message names it.</exception>
    /// <exception cref="OnnxModelTooLargeException">The model exceeds ONNX's 2 GB limit (try float16 storage).</exception>
    public static void Export(string modelFolder, string path, ClipVisionOnnxExportOptions? options = null,
        IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelFolder);
        var config = ClipConfig.FromFolder(modelFolder);
        using var checkpoint = ClipCheckpoint.Open(modelFolder);
        Export(checkpoint, config, path, options, progress, cancellationToken);
    }

    /// <summary>Exports the vision encoder of <paramref name="checkpoint"/> to <paramref name="path"/> (written atomically).</summary>
    /// <param name="checkpoint">The weights; Hugging Face or open_clip names. Not disposed.</param>
    /// <param name="config">The architecture (<see cref="ClipConfig.Vision"/> and <see cref="ClipConfig.ProjectionDim"/> are used).</param>
    /// <param name="path">The .onnx file to write.</param>
    /// <param name="options">Weight override, head, storage and names; null for defaults.</param>
    /// <param name="progress">Receives the fraction done, 0 to 1.</param>
    /// <param name="cancellationToken">Stops the export between layers; nothing is written then.</param>
    /// <exception cref="InvalidDataException">A tensor is missing or has the wrong shape; the message names it.</exception>
    /// <exception cref="OnnxModelTooLargeException">The model exceeds ONNX's 2 GB limit (try float16 storage).</exception>
    public static void Export(Checkpoint checkpoint, ClipConfig config, string path, ClipVisionOnnxExportOptions? options = null,
        IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        // Building is nearly all the work; serialising the protobuf is the rest.
        var builder = BuildGraph(checkpoint, config, options, progress is null ? null : new SynchronousProgress<double>(p => progress.Report(0.95 * p)), cancellationToken);
        cancellationToken.ThrowIfCancellationRequested();
        builder.Save(path);
        progress?.Report(1.0);
    }

    /// <summary>
    /// Builds the export graph without writing it, so callers can serialise it themselves
    /// (<see cref="OnnxGraphBuilder.ToBytes"/>) or extend it before saving.
    /// </summary>
    /// <inheritdoc cref="Export(Checkpoint, ClipConfig, string, ClipVisionOnnxExportOptions?, IProgress{double}?, CancellationToken)"/>
    public static OnnxGraphBuilder BuildGraph(Checkpoint checkpoint, ClipConfig config, ClipVisionOnnxExportOptions? options = null,
        IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(config);
        options ??= new ClipVisionOnnxExportOptions();
        config.Validate();
        CheckNames(options);
        var v = config.Vision;
        if (options.Head is { } head && head.EmbeddingDim != config.ProjectionDim)
            throw new ArgumentException(
                $"The {head.Kind} head reads {head.EmbeddingDim}-wide embeddings but the model's projection dimension is {config.ProjectionDim}.", nameof(options));

        var weights = new WeightSource(checkpoint, options.WeightOverride, ExpectedShapes(config));
        var storage = options.WeightStorage;
        var b = new OnnxGraphBuilder("clip_vision", options.OpsetVersion);
        b.DocString = $"CLIP vision encoder ({v.Layers} layers, width {v.Width}, {v.ImageSize}px images in {v.PatchSize}px patches) exported by Microsoft.ML.TaskVectors.";
        b.SetMetadata(ConfigMetadataKey, config.ToHuggingFaceJson());
        b.SetMetadata(HeadMetadataKey, options.Head?.Kind switch
        {
            null => "none",
            OnnxClassificationHeadKind.Linear => "linear",
            _ => "zero-shot",
        });
        int steps = v.Layers + 2, done = 0;
        void Step()
        {
            cancellationToken.ThrowIfCancellationRequested();
            progress?.Report((double)++done / steps);
        }
        float eps = (float)v.LayerNormEps;

        // Embeddings: patches by a strided convolution, then the class token in front and positions added.
        const string e = "vision_model.embeddings.";
        var pixels = b.AddInput(options.InputName, OnnxElementType.Float, "batch", 3, v.ImageSize, v.ImageSize);
        string x;
        using (var scope = NewDisposeScope())
        {
            var conv = b.AddInitializer(e + "patch_embedding.weight", weights.Read(e + "patch_embedding.weight"), storage);
            var grid = b.Conv(pixels, conv, strides: [v.PatchSize, v.PatchSize], name: "patch_embeds");
            var patches = b.Transpose(b.Reshape(grid, [0, v.Width, -1], name: "patch_embeds_flat"), [0, 2, 1], name: "patch_tokens");
            var cls = b.AddInitializer(e + "class_embedding", weights.Read(e + "class_embedding").reshape(1, 1, v.Width));
            var clsShape = b.Concat([b.Shape(pixels, 0, 1, name: "batch_size"), b.Int64Vector(1, v.Width)], 0, name: "class_token_shape");
            var clsTokens = b.Expand(cls, clsShape, name: "class_tokens");
            var tokens = b.Concat([clsTokens, patches], 1, name: "tokens");
            var positions = b.AddInitializer(e + "position_embedding.weight", weights.Read(e + "position_embedding.weight"), storage);
            x = b.Add(tokens, positions, name: "embeddings");
            x = LayerNorm(b, weights, x, "vision_model.pre_layrnorm", eps);
        }
        Step();

        for (int i = 0; i < v.Layers; i++)
        {
            using var scope = NewDisposeScope();
            x = EncoderLayer(b, weights, x, v, i, storage, eps);
            Step();
        }

        // Pool the class token, normalise, project.
        using (var scope = NewDisposeScope())
        {
            var pooled = b.Gather(x, 0, axis: 1, name: "pooled");
            pooled = LayerNorm(b, weights, pooled, "vision_model.post_layernorm", eps);
            var projection = b.AddInitializer("visual_projection.weight_t", weights.Read("visual_projection.weight").t(), storage);
            var embeds = b.MatMul(pooled, projection, name: options.EmbeddingsName);
            b.AddOutput(embeds, options.EmbeddingsName, OnnxElementType.Float, "batch", config.ProjectionDim);
            if (options.Head is { } h)
            {
                var logits = h.Append(b, embeds, storage, options.LogitsName);
                b.AddOutput(logits, options.LogitsName, OnnxElementType.Float, "batch", h.Classes);
            }
        }
        Step();
        return b;
    }

    private static string EncoderLayer(OnnxGraphBuilder b, WeightSource weights, string x, ClipVisionConfig v, int i,
        OnnxWeightStorage storage, float eps)
    {
        var p = $"vision_model.encoder.layers.{i.ToString(CultureInfo.InvariantCulture)}.";
        var a = p + "self_attn.";

        // Attention: one fused q/k/v product, split into heads as [B, heads, T, head_width].
        var h = LayerNorm(b, weights, x, p + "layer_norm1", eps);
        var qkvWeight = cat([weights.Read(a + "q_proj.weight"), weights.Read(a + "k_proj.weight"), weights.Read(a + "v_proj.weight")], 0);
        var qkvBias = cat([weights.Read(a + "q_proj.bias"), weights.Read(a + "k_proj.bias"), weights.Read(a + "v_proj.bias")], 0);
        var qkv = b.Add(
            b.MatMul(h, b.AddInitializer(a + "qkv_proj.weight_t", qkvWeight.t(), storage), name: a + "qkv_matmul"),
            b.AddInitializer(a + "qkv_proj.bias", qkvBias), name: a + "qkv");
        qkv = b.Reshape(qkv, [0, 0, 3, v.Heads, v.HeadWidth], name: a + "qkv_heads");
        var q = b.Transpose(b.Gather(qkv, 0, axis: 2, name: a + "q_tokens"), [0, 2, 1, 3], name: a + "q");
        var kT = b.Transpose(b.Gather(qkv, 1, axis: 2, name: a + "k_tokens"), [0, 2, 3, 1], name: a + "k_t");
        var vv = b.Transpose(b.Gather(qkv, 2, axis: 2, name: a + "v_tokens"), [0, 2, 1, 3], name: a + "v");
        q = b.Mul(q, b.FloatScalar((float)(1.0 / Math.Sqrt(v.HeadWidth))), name: a + "q_scaled");
        var probabilities = b.Softmax(b.MatMul(q, kT, name: a + "scores"), -1, name: a + "probabilities");
        var context = b.MatMul(probabilities, vv, name: a + "context_heads");
        context = b.Reshape(b.Transpose(context, [0, 2, 1, 3], name: a + "context_tokens"), [0, 0, v.Width], name: a + "context");
        var attention = Linear(b, weights, context, a + "out_proj", storage);
        x = b.Add(x, attention, name: p + "attention_residual");

        // MLP.
        h = LayerNorm(b, weights, x, p + "layer_norm2", eps);
        h = Linear(b, weights, h, p + "mlp.fc1", storage);
        h = v.Activation == ClipActivation.QuickGelu ? QuickGelu(b, h, p + "mlp.act") : Gelu(b, h, p + "mlp.act");
        h = Linear(b, weights, h, p + "mlp.fc2", storage);
        return b.Add(x, h, name: p + "output");
    }

    // y = x·Wᵀ + b with W stored pre-transposed, since MatMul (unlike Gemm) takes the 3-D token tensor.
    private static string Linear(OnnxGraphBuilder b, WeightSource weights, string x, string prefix, OnnxWeightStorage storage)
    {
        var w = b.AddInitializer(prefix + ".weight_t", weights.Read(prefix + ".weight").t(), storage);
        var bias = b.AddInitializer(prefix + ".bias", weights.Read(prefix + ".bias"));
        return b.Add(b.MatMul(x, w, name: prefix + "_matmul"), bias, name: prefix);
    }

    private static string LayerNorm(OnnxGraphBuilder b, WeightSource weights, string x, string prefix, float eps) =>
        b.LayerNormalization(x,
            b.AddInitializer(prefix + ".weight", weights.Read(prefix + ".weight")),
            b.AddInitializer(prefix + ".bias", weights.Read(prefix + ".bias")),
            axis: -1, epsilon: eps, name: prefix);

    // x·σ(1.702·x)
    private static string QuickGelu(OnnxGraphBuilder b, string x, string name) =>
        b.Mul(x, b.Sigmoid(b.Mul(x, b.FloatScalar(1.702f), name: name + "_scaled"), name: name + "_gate"), name: name);

    // 0.5·x·(1 + erf(x/√2)), the exact GELU (opset 17 has no Gelu operator).
    private static string Gelu(OnnxGraphBuilder b, string x, string name)
    {
        var erf = b.Erf(b.Mul(x, b.FloatScalar((float)(1.0 / Math.Sqrt(2.0))), name: name + "_scaled"), name: name + "_erf");
        var gate = b.Add(erf, b.FloatScalar(1f), name: name + "_erf_plus_one");
        return b.Mul(b.Mul(x, gate, name: name + "_x_gate"), b.FloatScalar(0.5f), name: name);
    }

    private static void CheckNames(ClipVisionOnnxExportOptions o)
    {
        string[] names = o.Head is null ? [o.InputName, o.EmbeddingsName] : [o.InputName, o.EmbeddingsName, o.LogitsName];
        foreach (var n in names)
            if (string.IsNullOrWhiteSpace(n)) throw new ArgumentException("Input and output names must not be empty.", nameof(o));
        if (names.Distinct(StringComparer.Ordinal).Count() != names.Length)
            throw new ArgumentException($"Input and output names must differ, found {string.Join(", ", names.Select(n => "'" + n + "'"))}.", nameof(o));
    }

    /// <summary>Every tensor the export reads, in Hugging Face names, with the shape the configuration implies.</summary>
    internal static Dictionary<string, long[]> ExpectedShapes(ClipConfig config)
    {
        var v = config.Vision;
        long w = v.Width;
        var shapes = new Dictionary<string, long[]>(StringComparer.Ordinal)
        {
            ["vision_model.embeddings.class_embedding"] = [w],
            ["vision_model.embeddings.patch_embedding.weight"] = [w, 3, v.PatchSize, v.PatchSize],
            ["vision_model.embeddings.position_embedding.weight"] = [v.Tokens, w],
            ["vision_model.pre_layrnorm.weight"] = [w],
            ["vision_model.pre_layrnorm.bias"] = [w],
            ["vision_model.post_layernorm.weight"] = [w],
            ["vision_model.post_layernorm.bias"] = [w],
            ["visual_projection.weight"] = [config.ProjectionDim, w],
        };
        for (int i = 0; i < v.Layers; i++)
        {
            var p = $"vision_model.encoder.layers.{i.ToString(CultureInfo.InvariantCulture)}.";
            foreach (var ln in new[] { "layer_norm1", "layer_norm2" })
            {
                shapes[p + ln + ".weight"] = [w];
                shapes[p + ln + ".bias"] = [w];
            }
            foreach (var proj in new[] { "q_proj", "k_proj", "v_proj", "out_proj" })
            {
                shapes[p + "self_attn." + proj + ".weight"] = [w, w];
                shapes[p + "self_attn." + proj + ".bias"] = [w];
            }
            shapes[p + "mlp.fc1.weight"] = [v.MlpWidth, w];
            shapes[p + "mlp.fc1.bias"] = [v.MlpWidth];
            shapes[p + "mlp.fc2.weight"] = [w, v.MlpWidth];
            shapes[p + "mlp.fc2.bias"] = [w];
        }
        return shapes;
    }

    /// <summary>Reads each tensor from the override when it has it, else from the base, as float32, after checking every shape up front.</summary>
    private sealed class WeightSource
    {
        private readonly ClipCheckpoint _base;
        private readonly ClipCheckpoint? _override;
        private readonly Dictionary<string, long[]> _shapes;

        public WeightSource(Checkpoint @base, Checkpoint? @override, Dictionary<string, long[]> shapes)
        {
            // Wrapping hands ownership of the inner checkpoint to the view; these views are never
            // disposed, so the caller's checkpoints stay open (the views hold nothing else).
            _base = @base as ClipCheckpoint ?? ClipCheckpoint.Wrap(@base);
            _override = @override is null ? null : @override as ClipCheckpoint ?? ClipCheckpoint.Wrap(@override);
            _shapes = shapes;
            var missing = shapes.Keys.Where(n => !_base.Contains(n) && _override?.Contains(n) != true).ToArray();
            if (missing.Length > 0)
                throw new InvalidDataException(
                    $"{_base.Location}: {missing.Length} CLIP vision tensor(s) missing, first '{missing[0]}' (expected {Text(shapes[missing[0]])}); "
                    + "a CLIP checkpoint in Hugging Face or open_clip names matching the configuration was expected.");
            foreach (var (name, shape) in shapes)
            {
                if (_base.Contains(name)) Check(_base, name, shape);
                if (_override?.Contains(name) == true) Check(_override, name, shape);
            }
            if (_override is not null && !shapes.Keys.Any(_override.Contains))
                throw new InvalidDataException(
                    $"{_override.Location}: the weight override holds none of the {shapes.Count} CLIP vision tensors (such as 'vision_model.encoder.layers.0.mlp.fc1.weight'); "
                    + "is it a CLIP checkpoint?");
        }

        public Tensor Read(string name)
        {
            var source = _override?.Contains(name) == true ? _override : _base;
            return source.ReadFloat32(name);
        }

        private static void Check(Checkpoint checkpoint, string name, long[] expected)
        {
            var info = checkpoint.GetInfo(name);
            if (!info.Shape.AsSpan().SequenceEqual(expected))
                throw new InvalidDataException(
                    $"{checkpoint.Location}: tensor '{name}' has shape {info.ShapeText}, but the configuration needs {Text(expected)}.");
            if (!info.DType.IsFloatingPoint())
                throw new InvalidDataException(
                    $"{checkpoint.Location}: tensor '{name}' has dtype {info.DType.ToSafetensorsName()}; a floating-point tensor was expected.");
        }

        private static string Text(long[] shape) => "[" + string.Join(", ", shape) + "]";
    }
}
