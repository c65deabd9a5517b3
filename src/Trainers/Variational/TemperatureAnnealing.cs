namespace Microsoft.ML.TaskVectors.Trainers.Variational;

/// <summary>How a <see cref="TemperatureSchedule"/> moves from its initial to its final temperature.</summary>
public enum TemperatureAnnealing
{
    /// <summary>τ = initial throughout.</summary>
    Constant,

    /// <summary>τ(s) = initial·(final/initial)^(s/(S − 1)): Jang et al.'s τ0·exp(−r·s) with r set to reach the final value at the last step.</summary>
    Exponential,

    /// <summary>τ(s) = initial + (final − initial)·s/(S − 1).</summary>
    Linear,
}
