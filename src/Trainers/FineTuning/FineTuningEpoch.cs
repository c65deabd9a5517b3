namespace Microsoft.ML.TaskVectors.Trainers.FineTuning;

/// <summary>What one epoch of fine-tuning did.</summary>
/// <param name="Epoch">The epoch, 1-based.</param>
/// <param name="Steps">Optimizer steps in this epoch (fewer than a full pass when a step budget ends it).</param>
/// <param name="TrainLoss">Mean cross-entropy over the epoch's training images (on their augmented pixels).</param>
/// <param name="TrainAccuracy">Fraction of the epoch's training images classified correctly before each step's update.</param>
/// <param name="ValidationAccuracy">Validation accuracy after the epoch, or null when not evaluated.</param>
/// <param name="LearningRate">The learning rate of the epoch's last step.</param>
public sealed record FineTuningEpoch(int Epoch, int Steps, double TrainLoss, double TrainAccuracy, double? ValidationAccuracy, double LearningRate);
