using Microsoft.ML.TaskVectors.Images;

namespace Microsoft.ML.TaskVectors.Data;

/// <summary>One item of a <see cref="LabeledImageDataset"/>.</summary>
/// <param name="Image">The decoded RGB image.</param>
/// <param name="Label">The class index into <see cref="LabeledImageDataset.ClassNames"/>.</param>
/// <param name="Source">Where the image comes from: a file path, or a file and index for IDX data.</param>
public sealed record LabeledImage(RgbImage Image, int Label, string Source);
