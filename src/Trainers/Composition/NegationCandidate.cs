namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>One model the negation's selection rule chooses among: an epoch of one training run.</summary>
/// <param name="TargetThresholdScale">The target's threshold scale of the run.</param>
/// <param name="Epoch">The epoch (1-based).</param>
/// <param name="Accuracy">Target and control accuracy on the selection splits after that epoch.</param>
/// <param name="Loss">Mean training loss of that epoch.</param>
public sealed record NegationCandidate(double TargetThresholdScale, int Epoch, NegationAccuracy Accuracy, double Loss);
