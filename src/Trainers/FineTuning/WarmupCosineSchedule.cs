namespace Microsoft.ML.TaskVectors.Trainers.FineTuning;

/// <summary>
/// The task_vectors learning-rate schedule (<c>cosine_lr</c>): a linear warm-up to the base rate, then a cosine
/// decay towards zero over the remaining steps. Step <c>s</c> (0-based) uses
/// <c>base·(s + 1)/W</c> while <c>s &lt; W</c>, then <c>base·½·(1 + cos(π·(s − W)/(T − W)))</c>.
/// </summary>
/// <param name="BaseLearningRate">The peak learning rate.</param>
/// <param name="WarmupSteps">Warm-up steps W (0 for none).</param>
/// <param name="TotalSteps">Total optimizer steps T.</param>
public sealed record WarmupCosineSchedule(double BaseLearningRate, int WarmupSteps, int TotalSteps)
{
    /// <summary>The learning rate of step <paramref name="step"/> (0-based).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The step is negative or not below <see cref="TotalSteps"/>.</exception>
    public double LearningRate(int step)
    {
        Validate();
        if (step < 0 || step >= TotalSteps)
            throw new ArgumentOutOfRangeException(nameof(step), $"Step {step} is outside [0, {TotalSteps}).");
        if (step < WarmupSteps) return BaseLearningRate * (step + 1) / WarmupSteps;
        // Here T > W, since step < T and step ≥ W.
        double progress = (double)(step - WarmupSteps) / (TotalSteps - WarmupSteps);
        return 0.5 * (1 + Math.Cos(Math.PI * progress)) * BaseLearningRate;
    }

    /// <summary>Throws <see cref="ArgumentException"/> naming the field that is out of range.</summary>
    public void Validate()
    {
        if (!double.IsFinite(BaseLearningRate) || BaseLearningRate <= 0)
            throw new ArgumentException($"BaseLearningRate must be a finite positive number; got {BaseLearningRate}.", nameof(BaseLearningRate));
        if (WarmupSteps < 0)
            throw new ArgumentException($"WarmupSteps must be 0 or more; got {WarmupSteps}.", nameof(WarmupSteps));
        if (TotalSteps < 1)
            throw new ArgumentException($"TotalSteps must be at least 1; got {TotalSteps}.", nameof(TotalSteps));
    }
}
