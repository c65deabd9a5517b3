namespace Microsoft.ML.TaskVectors.Images;

/// <summary>Options of <see cref="ClipImagePreprocessor"/>: the square input size and the per-channel normalisation.</summary>
public sealed record ClipImagePreprocessorOptions
{
    /// <summary>CLIP's per-channel mean (R, G, B) of pixel values scaled to [0, 1].</summary>
    public static IReadOnlyList<float> ClipMean { get; } = [0.48145466f, 0.4578275f, 0.40821073f];

    /// <summary>CLIP's per-channel standard deviation (R, G, B) of pixel values scaled to [0, 1].</summary>
    public static IReadOnlyList<float> ClipStd { get; } = [0.26862954f, 0.26130258f, 0.27577711f];

    /// <summary>Output height and width in pixels (224 for ViT-B/32, B/16 and L/14).</summary>
    public int ImageSize { get; init; } = 224;

    /// <summary>Per-channel mean (R, G, B) subtracted after scaling to [0, 1].</summary>
    public IReadOnlyList<float> Mean { get; init; } = ClipMean;

    /// <summary>Per-channel standard deviation (R, G, B) divided by after subtracting the mean.</summary>
    public IReadOnlyList<float> Std { get; init; } = ClipStd;

    /// <summary>Throws <see cref="ArgumentException"/> naming the option that is out of range.</summary>
    public void Validate()
    {
        if (ImageSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(ImageSize), $"ImageSize must be positive; got {ImageSize}.");
        if (Mean is null || Mean.Count != 3 || Mean.Any(m => !float.IsFinite(m)))
            throw new ArgumentException("Mean must hold three finite values (R, G, B).", nameof(Mean));
        if (Std is null || Std.Count != 3 || Std.Any(s => !(s > 0) || !float.IsFinite(s)))
            throw new ArgumentException("Std must hold three positive finite values (R, G, B).", nameof(Std));
    }
}
