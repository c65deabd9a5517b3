namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>Progress of <see cref="LeaveOneOut.Run(Func{Microsoft.ML.TaskVectors.TaskVectors.ITaskVectorSet, Microsoft.ML.TaskVectors.Composition.CompositionEngine}, Microsoft.ML.TaskVectors.TaskVectors.ITaskVectorSet, IReadOnlyList{CompositionTask}, string, LeaveOneOutOptions?, IProgress{LeaveOneOutProgress}?, CancellationToken)"/>.</summary>
/// <param name="HeldOut">0-based index of the held-out task being run.</param>
/// <param name="Count">N, the number of held-out runs.</param>
/// <param name="Task">The held-out task's name.</param>
/// <param name="Training">Progress of the training run on the other tasks.</param>
public readonly record struct LeaveOneOutProgress(int HeldOut, int Count, string Task, CompositionProgress Training);
