namespace Microsoft.ML.TaskVectors.Trainers.Variational;

/// <summary>
/// The annealing schedule of the relaxed Bernoulli's temperature over a run of S optimiser steps: τ starts at
/// <see cref="Initial"/> (smooth samples, low-variance gradients) and reaches <see cref="Final"/> at the last step
/// (samples close to 0/1, so training sees nearly the hard gates of test time), then stays there.
/// </summary>
/// <param name="Initial">τ at step 0 (default 1.0).</param>
/// <param name="Final">τ at step S − 1 and after (default 0.5, Jang et al.'s floor).</param>
/// <param name="Kind">The path between them (default exponential).</param>
public sealed record TemperatureSchedule(double Initial = 1.0, double Final = 0.5, TemperatureAnnealing Kind = TemperatureAnnealing.Exponential)
{
    /// <summary>The temperature at zero-based <paramref name="step"/> of a run of <paramref name="totalSteps"/> steps.</summary>
    /// <exception cref="ArgumentException">A temperature is not finite and positive, or the steps are out of range.</exception>
    public double At(long step, long totalSteps)
    {
        Validate();
        if (totalSteps < 1) throw new ArgumentOutOfRangeException(nameof(totalSteps), totalSteps, "A run has at least one step.");
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, "Steps count from 0.");
        if (Kind == TemperatureAnnealing.Constant) return Initial;
        double progress = totalSteps == 1 ? 1 : Math.Min(1, (double)step / (totalSteps - 1));
        return Kind switch
        {
            TemperatureAnnealing.Exponential => Initial * Math.Pow(Final / Initial, progress),
            TemperatureAnnealing.Linear => Initial + (Final - Initial) * progress,
            _ => throw new ArgumentException($"TemperatureSchedule.Kind has an unknown value {Kind}.", nameof(Kind)),
        };
    }

    /// <summary>Checks both temperatures are finite and positive.</summary>
    public void Validate()
    {
        if (!(Initial > 0) || !double.IsFinite(Initial))
            throw new ArgumentException($"TemperatureSchedule.Initial must be a finite positive temperature, found {Initial}.", nameof(Initial));
        if (!(Final > 0) || !double.IsFinite(Final))
            throw new ArgumentException($"TemperatureSchedule.Final must be a finite positive temperature, found {Final}.", nameof(Final));
    }
}
