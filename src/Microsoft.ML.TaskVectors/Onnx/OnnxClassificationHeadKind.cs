namespace Microsoft.ML.TaskVectors.Onnx;

/// <summary>What an <see cref="OnnxClassificationHead"/> computes.</summary>
public enum OnnxClassificationHeadKind
{
    /// <summary>logits = e·Wᵀ + b on the raw embeddings.</summary>
    Linear,

    /// <summary>logits = scale · (e / ‖e‖)·Cᵀ, CLIP's zero-shot classifier.</summary>
    ZeroShot,
}
