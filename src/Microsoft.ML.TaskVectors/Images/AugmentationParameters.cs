namespace Microsoft.ML.TaskVectors.Images;

/// <summary>
/// The random choices <see cref="ImageAugmentation"/> made for one image: the crop rectangle in the
/// source image, the flip, and the colour-jitter steps in the order they are applied.
/// </summary>
/// <param name="CropLeft">Left column of the crop in the source image.</param>
/// <param name="CropTop">Top row of the crop in the source image.</param>
/// <param name="CropWidth">Crop width in source pixels.</param>
/// <param name="CropHeight">Crop height in source pixels.</param>
/// <param name="Flip">Whether the resized crop is mirrored left to right.</param>
/// <param name="ColorJitter">Colour operations, applied in this order; empty when jitter is off.</param>
public sealed record AugmentationParameters(
    int CropLeft, int CropTop, int CropWidth, int CropHeight, bool Flip, IReadOnlyList<ColorJitterStep> ColorJitter);
