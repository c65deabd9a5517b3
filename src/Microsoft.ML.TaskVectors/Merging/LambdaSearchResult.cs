namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>One evaluated λ of a <see cref="TaskArithmetic.SelectLambda"/> search.</summary>
/// <param name="Lambda">The evaluated λ.</param>
/// <param name="Accuracies">Per-task accuracies of the model merged with this λ, in task order.</param>
/// <param name="MeanNormalizedAccuracy">Mean over tasks of accuracy ÷ fine-tuned accuracy.</param>
public sealed record LambdaEvaluation(double Lambda, IReadOnlyList<double> Accuracies, double MeanNormalizedAccuracy);

/// <summary>The outcome of a λ search: the best λ and every evaluation, in grid order.</summary>
/// <param name="BestLambda">The λ with the highest mean normalised accuracy (smallest λ on ties).</param>
/// <param name="BestMeanNormalizedAccuracy">The mean normalised accuracy reached at <paramref name="BestLambda"/>.</param>
/// <param name="Evaluations">Every evaluated λ with its per-task accuracies and score, in grid order.</param>
public sealed record LambdaSearchResult(double BestLambda, double BestMeanNormalizedAccuracy, IReadOnlyList<LambdaEvaluation> Evaluations);
