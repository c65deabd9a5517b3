namespace Microsoft.ML.TaskVectors.Images;

/// <summary>One colour-jitter operation of <see cref="ImageAugmentation"/>.</summary>
public enum ColorJitterKind
{
    /// <summary>Multiply every channel by the factor (blend with black).</summary>
    Brightness,

    /// <summary>Blend with the image's mean grey level: factor 0 gives flat grey, 1 the image.</summary>
    Contrast,

    /// <summary>Blend with the pixel's own grey level: factor 0 gives a grey image, 1 the image.</summary>
    Saturation,

    /// <summary>Rotate the hue by the factor, in turns (−0.5 … 0.5).</summary>
    Hue,
}
