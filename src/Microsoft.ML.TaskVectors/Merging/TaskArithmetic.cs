using Microsoft.ML.TaskVectors.TaskVectors;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// Task arithmetic: delta = λ·Σt τt. λ is usually chosen on validation data with
/// <see cref="SelectLambda"/> over <see cref="DefaultGrid"/>; 0.3 is the fixed default when no
/// validation data is available.
/// </summary>
public sealed class TaskArithmetic : MergeMethod
{
    /// <summary>The default λ when no validation data is available.</summary>
    public const double DefaultLambda = 0.3;

    /// <summary>The validation grid {0, 0.05, …, 1.0}: 21 values, each computed exactly as k/20.</summary>
    public static IReadOnlyList<double> DefaultGrid { get; } =
        Array.AsReadOnly(Enumerable.Range(0, 21).Select(k => k / 20.0).ToArray());

    /// <summary>Creates the method.</summary>
    /// <param name="lambda">Scaling coefficient λ, finite and ≥ 0.</param>
    public TaskArithmetic(double lambda = DefaultLambda)
    {
        RequireNonNegativeFinite(lambda, nameof(lambda));
        Lambda = lambda;
    }

    /// <summary>Scaling coefficient λ.</summary>
    public double Lambda { get; }

    /// <inheritdoc />
    public override string Name => "task-arithmetic";

    /// <inheritdoc />
    public override torch.Tensor MergeTensor(string tensorName, ITaskVectorSet taskVectors)
    {
        ValidateArguments(tensorName, taskVectors);
        using var scope = torch.NewDisposeScope();
        var sum = taskVectors.Sum(tensorName);
        return sum.mul_(Lambda).MoveToOuterDisposeScope();
    }

    internal override double[]? LinearTaskWeights(int taskCount) => Enumerable.Repeat(Lambda, taskCount).ToArray();

    /// <summary>
    /// Evaluates every λ of <paramref name="grid"/> with the caller's evaluator and returns the λ
    /// with the highest mean normalised accuracy (accuracy ÷ that task's fine-tuned accuracy);
    /// ties go to the smaller λ.
    /// </summary>
    /// <param name="grid">Candidate λ values (e.g. <see cref="DefaultGrid"/>); at least one, all finite.</param>
    /// <param name="evaluate">Maps λ to the per-task accuracies of the model merged with that λ.</param>
    /// <param name="finetunedAccuracies">Each task's fine-tuned accuracy (&gt; 0), in task order.</param>
    public static LambdaSearchResult SelectLambda(
        IReadOnlyList<double> grid,
        Func<double, IReadOnlyList<double>> evaluate,
        IReadOnlyList<double> finetunedAccuracies)
    {
        ArgumentNullException.ThrowIfNull(grid);
        ArgumentNullException.ThrowIfNull(evaluate);
        ArgumentNullException.ThrowIfNull(finetunedAccuracies);
        if (grid.Count == 0)
        {
            throw new ArgumentException("The λ grid is empty; give at least one candidate λ.", nameof(grid));
        }

        if (finetunedAccuracies.Count == 0)
        {
            throw new ArgumentException("At least one fine-tuned accuracy is required.", nameof(finetunedAccuracies));
        }

        for (int i = 0; i < finetunedAccuracies.Count; i++)
        {
            double ft = finetunedAccuracies[i];
            if (!double.IsFinite(ft) || ft <= 0)
            {
                throw new ArgumentOutOfRangeException(nameof(finetunedAccuracies), ft,
                    $"Fine-tuned accuracy of task {i} must be a finite number > 0 to normalise by it; got {ft}.");
            }
        }

        var evaluations = new List<LambdaEvaluation>(grid.Count);
        LambdaEvaluation? best = null;
        foreach (double lambda in grid)
        {
            if (!double.IsFinite(lambda))
            {
                throw new ArgumentException($"The λ grid contains a non-finite value ({lambda}).", nameof(grid));
            }

            var accuracies = evaluate(lambda)
                ?? throw new InvalidOperationException($"The evaluator returned null for λ = {lambda}.");
            if (accuracies.Count != finetunedAccuracies.Count)
            {
                throw new ArgumentException(
                    $"The evaluator returned {accuracies.Count} accuracies for λ = {lambda}, but {finetunedAccuracies.Count} fine-tuned accuracies were given; both must have one value per task.",
                    nameof(evaluate));
            }

            double total = 0;
            for (int i = 0; i < accuracies.Count; i++)
            {
                total += accuracies[i] / finetunedAccuracies[i];
            }

            var evaluation = new LambdaEvaluation(lambda, accuracies.ToArray(), total / accuracies.Count);
            evaluations.Add(evaluation);
            if (best is null
                || evaluation.MeanNormalizedAccuracy > best.MeanNormalizedAccuracy
                || (evaluation.MeanNormalizedAccuracy == best.MeanNormalizedAccuracy && lambda < best.Lambda))
            {
                best = evaluation;
            }
        }

        return new LambdaSearchResult(best!.Lambda, best.MeanNormalizedAccuracy, evaluations);
    }
}
