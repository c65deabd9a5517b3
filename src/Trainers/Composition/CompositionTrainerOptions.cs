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

    /// <summary>
    /// Folder for a checkpoint written atomically after each epoch (null: none). A run whose folder holds a checkpoint
    /// of the same method, options and tasks continues from it and ends where an uninterrupted run would, bit for bit
    /// on the CPU; a checkpoint of another method or other options is refused. Without a cosine schedule the epochs may
    /// be raised between runs. The checkpoint stays after the last epoch: running again returns the same result at once.
    /// </summary>
    public string? CheckpointDirectory { get; init; }

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
/// <param name="GatedRatio">
/// Gated methods: the fraction of gates Ω ≥ 0.5 in the step (in the epoch's report, the mean over its steps); null otherwise.
/// </param>
/// <param name="SelectionAccuracies">Each task's raw accuracy on its selection split, in the epoch's report; null otherwise.</param>
public readonly record struct CompositionProgress(int Epoch, int Step, int Steps, double Loss, double? SelectionScore,
    double? GatedRatio = null, IReadOnlyList<double>? SelectionAccuracies = null);
