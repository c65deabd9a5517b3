namespace Microsoft.ML.TaskVectors.Images;

/// <summary>A colour-jitter operation with the factor drawn for one image.</summary>
/// <param name="Kind">The operation.</param>
/// <param name="Factor">Its factor: a multiplier for brightness, contrast and saturation; a hue shift in turns for hue.</param>
public readonly record struct ColorJitterStep(ColorJitterKind Kind, float Factor);
