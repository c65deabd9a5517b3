namespace Microsoft.ML.TaskVectors.Data;

/// <summary>
/// How a procedural task is generated (<see cref="ProceduralTasks"/>): the image size, the images per class of
/// each split and the seed. Defaults: 32×32 pixels, 100 / 20 / 50 images per class, seed 0.
/// </summary>
public sealed record ProceduralTaskOptions
{
    /// <summary>The smallest and largest <see cref="ImageSize"/>.</summary>
    public const int MinImageSize = 8, MaxImageSize = 1024;

    /// <summary>The most images per class of one split (so a split's count stays well inside an int).</summary>
    public const int MaxPerClass = 1_000_000;

    /// <summary>Width and height of the square images in pixels (CLIP preprocessing resizes them). Default 32.</summary>
    public int ImageSize { get; init; } = 32;

    /// <summary>Training images per class. Default 100.</summary>
    public int TrainPerClass { get; init; } = 100;

    /// <summary>Validation images per class, generated (not carved from train). Default 20.</summary>
    public int ValidationPerClass { get; init; } = 20;

    /// <summary>Test images per class; 0 gives a task without a test split. Default 50.</summary>
    public int TestPerClass { get; init; } = 50;

    /// <summary>The seed every image is derived from. Default 0.</summary>
    public long Seed { get; init; }

    /// <summary>Images per class of <paramref name="split"/>.</summary>
    public int PerClass(DatasetSplit split) => split switch
    {
        DatasetSplit.Train => TrainPerClass,
        DatasetSplit.Validation => ValidationPerClass,
        DatasetSplit.Test => TestPerClass,
        _ => throw new ArgumentOutOfRangeException(nameof(split), split, "Unknown split."),
    };

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first option out of range.</summary>
    public void Validate()
    {
        if (FindProblem() is { } problem) throw new ArgumentOutOfRangeException(problem.Option, problem.Message);
    }

    /// <summary>The first option out of range and a message naming it (with its key in <see cref="ProceduralTasks.Parse"/>), or null.</summary>
    internal (string Option, string Message)? FindProblem()
    {
        if (ImageSize is < MinImageSize or > MaxImageSize)
            return (nameof(ImageSize), $"The image size (ImageSize, size=) must be {MinImageSize} to {MaxImageSize} pixels; got {ImageSize}.");
        if (TrainPerClass is < 1 or > MaxPerClass)
            return (nameof(TrainPerClass), $"Training images per class (TrainPerClass, train=) must be 1 to {MaxPerClass}; got {TrainPerClass}.");
        if (ValidationPerClass is < 1 or > MaxPerClass)
            return (nameof(ValidationPerClass), $"Validation images per class (ValidationPerClass, val=) must be 1 to {MaxPerClass}; got {ValidationPerClass}.");
        if (TestPerClass is < 0 or > MaxPerClass)
            return (nameof(TestPerClass), $"Test images per class (TestPerClass, test=) must be 0 to {MaxPerClass}; got {TestPerClass}.");
        return null;
    }
}
