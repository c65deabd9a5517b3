namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>Accuracies of a task-negation model.</summary>
/// <param name="Target">Accuracy on the target (to-be-forgotten) task, in [0, 1].</param>
/// <param name="Control">Mean accuracy over the control tasks, in [0, 1].</param>
public sealed record NegationAccuracy(double Target, double Control);
