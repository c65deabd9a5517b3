namespace Microsoft.ML.TaskVectors.Heads;

/// <summary>What a <see cref="ClassificationHead"/> computes; stored as the <c>kind</c> metadata of a head file.</summary>
public enum ClassificationHeadKind
{
    /// <summary>logits = e·Wᵀ + b on the raw embeddings (<c>kind = linear</c>).</summary>
    Linear,

    /// <summary>logits = exp(logit_scale) · normalize(e)·Cᵀ, CLIP's zero-shot classifier (<c>kind = zeroshot</c>).</summary>
    ZeroShot,
}
