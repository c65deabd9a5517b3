using Microsoft.ML.TaskVectors.Checkpoints;

namespace Microsoft.ML.TaskVectors.Onnx;

/// <summary>Options of <see cref="ClipVisionOnnxExporter"/>.</summary>
public sealed record ClipVisionOnnxExportOptions
{
    /// <summary>
    /// Another checkpoint (Hugging Face or open_clip names) whose vision tensors replace the base's,
    /// such as a merged model; tensors it lacks come from the base. Shapes must match. The exporter
    /// does not dispose it.
    /// </summary>
    public Checkpoint? WeightOverride { get; init; }

    /// <summary>A classification head appended after the embeddings, adding the <see cref="LogitsName"/> output; null for none.</summary>
    public OnnxClassificationHead? Head { get; init; }

    /// <summary>How matrices are stored (vectors such as biases and LayerNorm weights always stay float32).</summary>
    public OnnxWeightStorage WeightStorage { get; init; } = OnnxWeightStorage.Float32;

    /// <summary>Name of the image input <c>[batch, 3, H, W]</c>.</summary>
    public string InputName { get; init; } = "pixel_values";

    /// <summary>Name of the (unnormalised) embedding output <c>[batch, D]</c>.</summary>
    public string EmbeddingsName { get; init; } = "image_embeds";

    /// <summary>Name of the logits output <c>[batch, classes]</c> when a <see cref="Head"/> is given.</summary>
    public string LogitsName { get; init; } = "logits";

    /// <summary>The ONNX opset; 17 or later (LayerNormalization).</summary>
    public int OpsetVersion { get; init; } = 17;
}
