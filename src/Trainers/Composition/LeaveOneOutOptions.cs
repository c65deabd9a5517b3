namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>Options of <see cref="LeaveOneOut"/>: what <see cref="CompositionTrainers.Train"/> takes.</summary>
public sealed record LeaveOneOutOptions
{
    /// <summary>Seed of every training run (the same for each held-out task).</summary>
    public long Seed { get; init; }

    /// <summary>Training epochs; the method's default when null.</summary>
    public int? Epochs { get; init; }

    /// <summary>Images per step; the method's default when null.</summary>
    public int? BatchSize { get; init; }

    /// <summary>Images per forward pass when evaluating the held-out task.</summary>
    public int EvaluationBatchSize { get; init; } = 64;
}
