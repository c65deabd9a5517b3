namespace Microsoft.ML.TaskVectors.Trainers.FineTuning;

/// <summary>A progress report of a <see cref="FineTuner"/>.</summary>
/// <param name="Phase">What is running.</param>
/// <param name="Fraction">How much of the phase is done, in [0, 1].</param>
/// <param name="Epoch">The current epoch, 1-based (0 before training).</param>
/// <param name="Epochs">Epochs in the run.</param>
/// <param name="Step">Optimizer steps done.</param>
/// <param name="TotalSteps">Optimizer steps in the run.</param>
/// <param name="Loss">The last batch's cross-entropy during training; null otherwise.</param>
/// <param name="Accuracy">
/// During training the epoch's running training accuracy; after an evaluation its accuracy; null otherwise.
/// </param>
public sealed record FineTuningProgress(
    FineTuningPhase Phase, double Fraction, int Epoch, int Epochs, int Step, int TotalSteps, double? Loss, double? Accuracy);
