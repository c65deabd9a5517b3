namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>Options shared by the composition trainers; defaults are aTLAS's (SPEC 2.2).</summary>
public record CompositionTrainerOptions
{
    /// <summary>Seeds shuffling and initialisation; the same seed gives the same coefficients on the CPU.</summary>
    public long Seed { get; init; }

    /// <summary>Passes over the largest task's training images.</summary>
    public int Epochs { get; init; } = 20;

    /// <summary>Images per step, split evenly between the tasks.</summary>
    public int BatchSize { get; init; } = 128;

    /// <summary>AdamW learning rate.</summary>
    public double LearningRate { get; init; } = 1e-3;

    /// <summary>AdamW weight decay.</summary>
    public double WeightDecay { get; init; } = 0.1;

    /// <summary>Largest gradient norm; larger gradients are scaled down.</summary>
    public double GradientClipNorm { get; init; } = 1.0;

    /// <summary>Keep preprocessed images in memory between epochs (faster; about 0.6 MB per 224-pixel image).</summary>
    public bool CachePixels { get; init; } = true;

    /// <summary>Images per forward pass when evaluating.</summary>
    public int EvaluationBatchSize { get; init; } = 64;

    internal void Validate(int tasks)
    {
        if (Epochs < 1) throw new ArgumentOutOfRangeException(nameof(Epochs), Epochs, "At least one epoch is needed.");
        if (BatchSize < tasks) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, $"The batch size must be at least the number of tasks ({tasks}).");
        if (!(LearningRate > 0)) throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "The learning rate must be positive.");
        if (WeightDecay < 0 || GradientClipNorm <= 0 || EvaluationBatchSize < 1)
            throw new ArgumentOutOfRangeException(nameof(WeightDecay), "Weight decay must be ≥ 0, the clipping norm and evaluation batch size positive.");
    }
}

/// <summary>Progress of a composition trainer.</summary>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="Step">1-based step within the epoch.</param>
/// <param name="Steps">Steps per epoch.</param>
/// <param name="Loss">Training loss of the step.</param>
/// <param name="SelectionScore">Mean normalised accuracy on the selection splits, reported once per epoch.</param>
public readonly record struct CompositionProgress(int Epoch, int Step, int Steps, double Loss, double? SelectionScore);
