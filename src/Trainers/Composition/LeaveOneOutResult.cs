namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>One held-out task of a leave-one-out run.</summary>
/// <param name="HeldOutTask">The task whose vector was left out and which the composition never trained on.</param>
/// <param name="Accuracy">Accuracy on it of the composition of the other N−1 task vectors, through its own head.</param>
/// <param name="PretrainedAccuracy">The pre-trained model's accuracy on it, for reference.</param>
/// <param name="GatedRatio">Mean fraction of open gates on its samples for gated methods; else null.</param>
public sealed record LeaveOneOutResult(string HeldOutTask, double Accuracy, double PretrainedAccuracy, double? GatedRatio);
