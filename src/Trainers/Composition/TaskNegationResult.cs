using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>What <see cref="TaskNegationTrainer"/> chose.</summary>
/// <param name="Coefficients">The hard-gated coefficients z̃ [N, M] of the chosen model (CPU, float32).</param>
/// <param name="Gates">Its hard gates Ω [N, M] (0 or 1).</param>
/// <param name="TargetTask">Index of the target (to-be-forgotten) task; the others are controls.</param>
/// <param name="Before">The pre-trained model's accuracies on the selection splits.</param>
/// <param name="After">The chosen model's accuracies on the selection splits.</param>
/// <param name="Chosen">The chosen run and epoch.</param>
/// <param name="ControlConstraintMet">Whether the chosen model keeps control accuracy ≥ the required fraction of <paramref name="Before"/>'s.</param>
/// <param name="Candidates">Every epoch of every run, in training order.</param>
public sealed record TaskNegationResult(Tensor Coefficients, Tensor Gates, int TargetTask, NegationAccuracy Before, NegationAccuracy After,
    NegationCandidate Chosen, bool ControlConstraintMet, IReadOnlyList<NegationCandidate> Candidates);
