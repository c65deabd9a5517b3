namespace Microsoft.ML.TaskVectors.Images;

/// <summary>
/// Options of <see cref="ImageAugmentation"/>. Defaults: torchvision's <c>RandomResizedCrop</c>
/// (scale 0.08…1, aspect ratio 3/4…4/3) to the model size, a horizontal flip with probability 0.5, and no
/// colour jitter.
/// </summary>
public sealed record ImageAugmentationOptions
{
    /// <summary>Output size, mean and std; the output matches <see cref="ClipImagePreprocessor"/>'s layout.</summary>
    public ClipImagePreprocessorOptions Preprocessing { get; init; } = new();

    /// <summary>Smallest crop area as a fraction of the image area.</summary>
    public double MinScale { get; init; } = 0.08;

    /// <summary>Largest crop area as a fraction of the image area.</summary>
    public double MaxScale { get; init; } = 1.0;

    /// <summary>Smallest crop aspect ratio (width ÷ height); drawn log-uniformly.</summary>
    public double MinRatio { get; init; } = 3.0 / 4.0;

    /// <summary>Largest crop aspect ratio (width ÷ height).</summary>
    public double MaxRatio { get; init; } = 4.0 / 3.0;

    /// <summary>Probability of a horizontal flip.</summary>
    public double FlipProbability { get; init; } = 0.5;

    /// <summary>Brightness jitter b: factor drawn from [max(0, 1 − b), 1 + b]; 0 turns it off.</summary>
    public float Brightness { get; init; }

    /// <summary>Contrast jitter c: factor drawn from [max(0, 1 − c), 1 + c]; 0 turns it off.</summary>
    public float Contrast { get; init; }

    /// <summary>Saturation jitter s: factor drawn from [max(0, 1 − s), 1 + s]; 0 turns it off.</summary>
    public float Saturation { get; init; }

    /// <summary>Hue jitter h (at most 0.5): shift drawn from [−h, h] turns; 0 turns it off.</summary>
    public float Hue { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the option that is out of range.</summary>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(Preprocessing, nameof(Preprocessing));
        Preprocessing.Validate();
        if (!(MinScale > 0 && MinScale <= MaxScale && MaxScale <= 1))
            throw new ArgumentException($"Scale range must satisfy 0 < MinScale ≤ MaxScale ≤ 1; got {MinScale}…{MaxScale}.", nameof(MinScale));
        if (!(MinRatio > 0 && MinRatio <= MaxRatio && double.IsFinite(MaxRatio)))
            throw new ArgumentException($"Ratio range must satisfy 0 < MinRatio ≤ MaxRatio; got {MinRatio}…{MaxRatio}.", nameof(MinRatio));
        if (!(FlipProbability >= 0 && FlipProbability <= 1))
            throw new ArgumentOutOfRangeException(nameof(FlipProbability), $"FlipProbability must be in [0, 1]; got {FlipProbability}.");
        RequireJitter(Brightness, nameof(Brightness));
        RequireJitter(Contrast, nameof(Contrast));
        RequireJitter(Saturation, nameof(Saturation));
        if (!(Hue >= 0 && Hue <= 0.5f))
            throw new ArgumentOutOfRangeException(nameof(Hue), $"Hue must be in [0, 0.5]; got {Hue}.");
    }

    private static void RequireJitter(float value, string name)
    {
        if (!(value >= 0 && float.IsFinite(value)))
            throw new ArgumentOutOfRangeException(name, $"{name} must be a finite value ≥ 0; got {value}.");
    }
}
