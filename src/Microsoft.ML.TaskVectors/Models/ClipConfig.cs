using System.Text.Json;
using System.Text.Json.Nodes;

namespace Microsoft.ML.TaskVectors.Models;

/// <summary>The MLP activation of a CLIP transformer.</summary>
public enum ClipActivation
{
    /// <summary>x·σ(1.702·x), OpenAI's original CLIP models.</summary>
    QuickGelu,

    /// <summary>The exact (erf) GELU, most open_clip models trained from scratch.</summary>
    Gelu,
}

/// <summary>The shape of a CLIP vision transformer.</summary>
/// <param name="ImageSize">Input height and width in pixels.</param>
/// <param name="PatchSize">Patch height and width in pixels; <paramref name="ImageSize"/> must be a multiple.</param>
/// <param name="Width">Token width (hidden size).</param>
/// <param name="Layers">Number of residual attention blocks.</param>
/// <param name="Heads">Number of attention heads; must divide <paramref name="Width"/>.</param>
/// <param name="MlpWidth">Hidden width of each block's MLP.</param>
/// <param name="Activation">MLP activation.</param>
/// <param name="LayerNormEps">LayerNorm epsilon.</param>
public sealed record ClipVisionConfig(
    int ImageSize, int PatchSize, int Width, int Layers, int Heads, int MlpWidth,
    ClipActivation Activation = ClipActivation.QuickGelu, double LayerNormEps = 1e-5)
{
    /// <summary>Patches per side.</summary>
    public int GridSize => ImageSize / PatchSize;

    /// <summary>Tokens per image: the class token and one per patch.</summary>
    public int Tokens => GridSize * GridSize + 1;

    /// <summary>Width of one attention head.</summary>
    public int HeadWidth => Width / Heads;

    internal void Validate(string source)
    {
        Require(ImageSize > 0 && PatchSize > 0 && ImageSize % PatchSize == 0, source,
            $"vision image size {ImageSize} must be a positive multiple of the patch size {PatchSize}");
        Require(Width > 0 && Heads > 0 && Width % Heads == 0, source,
            $"vision width {Width} must be a positive multiple of the head count {Heads}");
        Require(Layers > 0 && MlpWidth > 0, source, $"vision layers ({Layers}) and MLP width ({MlpWidth}) must be positive");
    }

    internal static void Require(bool condition, string source, string message)
    {
        if (!condition) throw new InvalidDataException($"{source}: {message}.");
    }
}

/// <summary>The shape of a CLIP text transformer.</summary>
/// <param name="VocabularySize">Token vocabulary size (49,408 for CLIP's BPE).</param>
/// <param name="ContextLength">Maximum tokens per text, start and end included (77).</param>
/// <param name="Width">Token width.</param>
/// <param name="Layers">Number of residual attention blocks.</param>
/// <param name="Heads">Number of attention heads.</param>
/// <param name="MlpWidth">Hidden width of each block's MLP.</param>
/// <param name="Activation">MLP activation.</param>
/// <param name="LayerNormEps">LayerNorm epsilon.</param>
/// <param name="EndOfTextTokenId">The token whose position gives the pooled output.</param>
public sealed record ClipTextConfig(
    int VocabularySize, int ContextLength, int Width, int Layers, int Heads, int MlpWidth,
    ClipActivation Activation = ClipActivation.QuickGelu, double LayerNormEps = 1e-5, int EndOfTextTokenId = 49407)
{
    internal void Validate(string source)
    {
        ClipVisionConfig.Require(Width > 0 && Heads > 0 && Width % Heads == 0, source,
            $"text width {Width} must be a positive multiple of the head count {Heads}");
        ClipVisionConfig.Require(VocabularySize > 0 && ContextLength > 0 && Layers > 0 && MlpWidth > 0, source,
            "text vocabulary size, context length, layers and MLP width must be positive");
    }
}

/// <summary>
/// A CLIP model's configuration: the vision tower, the optional text tower and the shared embedding width.
/// Reads Hugging Face <c>config.json</c> and open_clip <c>open_clip_config.json</c>.
/// </summary>
/// <param name="Vision">The vision tower.</param>
/// <param name="Text">The text tower, or null for a vision-only model.</param>
/// <param name="ProjectionDim">Width of the joint image-text embedding.</param>
public sealed record ClipConfig(ClipVisionConfig Vision, ClipTextConfig? Text, int ProjectionDim)
{
    /// <summary>The file name of a Hugging Face configuration.</summary>
    public const string HuggingFaceConfigFile = "config.json";

    /// <summary>The file name of an open_clip hub configuration.</summary>
    public const string OpenClipConfigFile = "open_clip_config.json";

    /// <summary>OpenAI CLIP's text tower (used by every standard vision size).</summary>
    public static ClipTextConfig StandardText(int width = 512, int heads = 8) =>
        new(49408, 77, width, 12, heads, 4 * width);

    /// <summary>ViT-B/32: 224 px, 32 px patches, width 768, 12 layers, 512-wide embeddings.</summary>
    public static ClipConfig VitB32 { get; } = new(new(224, 32, 768, 12, 12, 3072), StandardText(), 512);

    /// <summary>ViT-B/16: 224 px, 16 px patches, width 768, 12 layers, 512-wide embeddings.</summary>
    public static ClipConfig VitB16 { get; } = new(new(224, 16, 768, 12, 12, 3072), StandardText(), 512);

    /// <summary>ViT-L/14: 224 px, 14 px patches, width 1024, 24 layers, 768-wide embeddings.</summary>
    public static ClipConfig VitL14 { get; } = new(new(224, 14, 1024, 24, 16, 4096), StandardText(768, 12), 768);

    /// <summary>The named architectures: <c>vit-b-32</c>, <c>vit-b-16</c>, <c>vit-l-14</c>.</summary>
    public static IReadOnlyDictionary<string, ClipConfig> Architectures { get; } = new Dictionary<string, ClipConfig>(StringComparer.OrdinalIgnoreCase)
    {
        ["vit-b-32"] = VitB32,
        ["vit-b-16"] = VitB16,
        ["vit-l-14"] = VitL14,
    };

    /// <summary>Checks every dimension; the message names <paramref name="source"/>.</summary>
    /// <exception cref="InvalidDataException">A dimension is impossible.</exception>
    public void Validate(string source = "CLIP configuration")
    {
        Vision.Validate(source);
        Text?.Validate(source);
        ClipVisionConfig.Require(ProjectionDim > 0, source, $"projection dimension {ProjectionDim} must be positive");
    }

    /// <summary>
    /// Reads the configuration of a model folder: <c>config.json</c> (Hugging Face) or
    /// <c>open_clip_config.json</c> (open_clip hub layout).
    /// </summary>
    /// <exception cref="FileNotFoundException">The folder holds neither file.</exception>
    /// <exception cref="InvalidDataException">The file is not a CLIP configuration; the message names the file and key.</exception>
    public static ClipConfig FromFolder(string folder)
    {
        var hf = Path.Combine(folder, HuggingFaceConfigFile);
        if (File.Exists(hf)) return FromHuggingFace(File.ReadAllText(hf), hf);
        var oc = Path.Combine(folder, OpenClipConfigFile);
        if (File.Exists(oc)) return FromOpenClip(File.ReadAllText(oc), oc);
        throw new FileNotFoundException(
            $"{folder}: not a CLIP model folder; expected {HuggingFaceConfigFile} (Hugging Face) or {OpenClipConfigFile} (open_clip).", folder);
    }

    /// <summary>Parses a Hugging Face <c>CLIPModel</c> or <c>CLIPVisionModelWithProjection</c> configuration.</summary>
    public static ClipConfig FromHuggingFace(string json, string source = HuggingFaceConfigFile)
    {
        var root = ParseObject(json, source);
        // A full CLIPModel nests vision_config/text_config; a vision-only model is the vision config itself.
        var vision = root["vision_config"] as JsonObject ?? root;
        var projection = OptionalInt(root, "projection_dim", source) ?? OptionalInt(vision, "projection_dim", source) ?? 512;
        var v = new ClipVisionConfig(
            ImageSize: OptionalInt(vision, "image_size", source) ?? 224,
            PatchSize: OptionalInt(vision, "patch_size", source) ?? 32,
            Width: OptionalInt(vision, "hidden_size", source) ?? 768,
            Layers: OptionalInt(vision, "num_hidden_layers", source) ?? 12,
            Heads: OptionalInt(vision, "num_attention_heads", source) ?? 12,
            MlpWidth: OptionalInt(vision, "intermediate_size", source) ?? 3072,
            Activation: Activation(vision, "hidden_act", source),
            LayerNormEps: OptionalDouble(vision, "layer_norm_eps", source) ?? 1e-5);
        ClipTextConfig? t = null;
        if (root["text_config"] is JsonObject text)
        {
            var vocabulary = OptionalInt(text, "vocab_size", source) ?? 49408;
            var eos = OptionalInt(text, "eos_token_id", source) ?? vocabulary - 1;
            t = new ClipTextConfig(
                VocabularySize: vocabulary,
                ContextLength: OptionalInt(text, "max_position_embeddings", source) ?? 77,
                Width: OptionalInt(text, "hidden_size", source) ?? 512,
                Layers: OptionalInt(text, "num_hidden_layers", source) ?? 12,
                Heads: OptionalInt(text, "num_attention_heads", source) ?? 8,
                MlpWidth: OptionalInt(text, "intermediate_size", source) ?? 2048,
                Activation: Activation(text, "hidden_act", source),
                LayerNormEps: OptionalDouble(text, "layer_norm_eps", source) ?? 1e-5,
                // Old configurations say 2; the real end-of-text id is the vocabulary's last (as HF's argmax pooling assumes).
                EndOfTextTokenId: eos == 2 ? vocabulary - 1 : eos);
        }
        var config = new ClipConfig(v, t, projection);
        config.Validate(source);
        return config;
    }

    /// <summary>Parses an open_clip hub configuration (<c>model_cfg</c> with <c>vision_cfg</c> and <c>text_cfg</c>).</summary>
    public static ClipConfig FromOpenClip(string json, string source = OpenClipConfigFile)
    {
        var root = ParseObject(json, source);
        var model = root["model_cfg"] as JsonObject ?? root;
        var vision = model["vision_cfg"] as JsonObject
            ?? throw new InvalidDataException($"{source}: 'model_cfg.vision_cfg' is missing; an open_clip CLIP configuration was expected.");
        var activation = (OptionalBool(model, "quick_gelu", source) ?? false) ? ClipActivation.QuickGelu : ClipActivation.Gelu;
        foreach (var unsupported in new[] { "timm_model_name", "hf_model_name" })
            if (vision[unsupported] is not null || (model["text_cfg"] as JsonObject)?[unsupported] is not null)
                throw new InvalidDataException($"{source}: '{unsupported}' towers are not CLIP transformers and are not supported.");
        int width = OptionalInt(vision, "width", source) ?? 768;
        int headWidth = OptionalInt(vision, "head_width", source) ?? 64;
        double mlpRatio = OptionalDouble(vision, "mlp_ratio", source) ?? 4.0;
        var v = new ClipVisionConfig(
            ImageSize: OptionalInt(vision, "image_size", source) ?? 224,
            PatchSize: OptionalInt(vision, "patch_size", source) ?? 16,
            Width: width,
            Layers: OptionalInt(vision, "layers", source) ?? 12,
            Heads: headWidth > 0 ? width / headWidth : 0,
            MlpWidth: (int)(width * mlpRatio),
            Activation: activation);
        ClipTextConfig? t = null;
        if (model["text_cfg"] is JsonObject text)
        {
            int textWidth = OptionalInt(text, "width", source) ?? 512;
            int vocabulary = OptionalInt(text, "vocab_size", source) ?? 49408;
            // OpenAI's end-of-text token is the vocabulary's last (open_clip pools at the argmax id).
            t = new ClipTextConfig(
                VocabularySize: vocabulary,
                ContextLength: OptionalInt(text, "context_length", source) ?? 77,
                Width: textWidth,
                Layers: OptionalInt(text, "layers", source) ?? 12,
                Heads: OptionalInt(text, "heads", source) ?? 8,
                MlpWidth: (int)(textWidth * (OptionalDouble(text, "mlp_ratio", source) ?? 4.0)),
                Activation: activation,
                EndOfTextTokenId: vocabulary - 1);
        }
        var config = new ClipConfig(v, t, OptionalInt(model, "embed_dim", source) ?? 512);
        config.Validate(source);
        return config;
    }

    /// <summary>This configuration as a Hugging Face <c>config.json</c> (a <c>CLIPModel</c>).</summary>
    public string ToHuggingFaceJson()
    {
        static string Act(ClipActivation a) => a == ClipActivation.QuickGelu ? "quick_gelu" : "gelu";
        var root = new JsonObject
        {
            ["architectures"] = new JsonArray(Text is null ? "CLIPVisionModelWithProjection" : "CLIPModel"),
            ["model_type"] = "clip",
            ["projection_dim"] = ProjectionDim,
            ["vision_config"] = new JsonObject
            {
                ["image_size"] = Vision.ImageSize,
                ["patch_size"] = Vision.PatchSize,
                ["hidden_size"] = Vision.Width,
                ["num_hidden_layers"] = Vision.Layers,
                ["num_attention_heads"] = Vision.Heads,
                ["intermediate_size"] = Vision.MlpWidth,
                ["hidden_act"] = Act(Vision.Activation),
                ["layer_norm_eps"] = Vision.LayerNormEps,
                ["projection_dim"] = ProjectionDim,
            },
        };
        if (Text is { } t)
            root["text_config"] = new JsonObject
            {
                ["vocab_size"] = t.VocabularySize,
                ["max_position_embeddings"] = t.ContextLength,
                ["hidden_size"] = t.Width,
                ["num_hidden_layers"] = t.Layers,
                ["num_attention_heads"] = t.Heads,
                ["intermediate_size"] = t.MlpWidth,
                ["hidden_act"] = Act(t.Activation),
                ["layer_norm_eps"] = t.LayerNormEps,
                ["eos_token_id"] = t.EndOfTextTokenId,
                ["projection_dim"] = ProjectionDim,
            };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>This configuration as an open_clip hub <c>open_clip_config.json</c>.</summary>
    /// <exception cref="InvalidOperationException">The configuration cannot be expressed in open_clip's terms.</exception>
    public string ToOpenClipJson()
    {
        if (Vision.Width % Vision.Heads != 0 || Vision.MlpWidth % Vision.Width != 0)
            throw new InvalidOperationException("open_clip describes heads by head width and the MLP by an integer ratio of the width.");
        if (Text is { } t && t.Activation != Vision.Activation)
            throw new InvalidOperationException("open_clip uses one activation (quick_gelu or not) for both towers.");
        var model = new JsonObject
        {
            ["embed_dim"] = ProjectionDim,
            ["quick_gelu"] = Vision.Activation == ClipActivation.QuickGelu,
            ["vision_cfg"] = new JsonObject
            {
                ["image_size"] = Vision.ImageSize,
                ["layers"] = Vision.Layers,
                ["width"] = Vision.Width,
                ["patch_size"] = Vision.PatchSize,
                ["head_width"] = Vision.HeadWidth,
                ["mlp_ratio"] = Vision.MlpWidth / Vision.Width,
            },
        };
        if (Text is { } text)
            model["text_cfg"] = new JsonObject
            {
                ["context_length"] = text.ContextLength,
                ["vocab_size"] = text.VocabularySize,
                ["width"] = text.Width,
                ["heads"] = text.Heads,
                ["layers"] = text.Layers,
                ["mlp_ratio"] = (double)text.MlpWidth / text.Width,
            };
        return new JsonObject { ["model_cfg"] = model }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private static JsonObject ParseObject(string json, string source)
    {
        try
        {
            return JsonNode.Parse(json) as JsonObject ?? throw new InvalidDataException($"{source}: a JSON object was expected.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: not valid JSON ({e.Message}).", e);
        }
    }

    private static int? OptionalInt(JsonObject o, string key, string source) =>
        o[key] is JsonValue v
            ? v.TryGetValue(out int i) ? i
            : v.TryGetValue(out double d) && d == Math.Floor(d) ? (int)d
            : throw new InvalidDataException($"{source}: '{key}' must be an integer, found {v.ToJsonString()}.")
            : null;

    private static double? OptionalDouble(JsonObject o, string key, string source) =>
        o[key] is JsonValue v
            ? v.TryGetValue(out double d) ? d : throw new InvalidDataException($"{source}: '{key}' must be a number, found {v.ToJsonString()}.")
            : null;

    private static bool? OptionalBool(JsonObject o, string key, string source) =>
        o[key] is JsonValue v
            ? v.TryGetValue(out bool b) ? b : throw new InvalidDataException($"{source}: '{key}' must be true or false, found {v.ToJsonString()}.")
            : null;

    private static ClipActivation Activation(JsonObject o, string key, string source) =>
        (o[key] as JsonValue)?.GetValue<string>() switch
        {
            null or "quick_gelu" => ClipActivation.QuickGelu,
            "gelu" => ClipActivation.Gelu,
            var other => throw new InvalidDataException($"{source}: '{key}' is '{other}'; CLIP uses 'quick_gelu' or 'gelu'."),
        };
}
