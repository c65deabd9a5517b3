using System.Numerics;
using System.Runtime.CompilerServices;
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

    internal override TaskBatchKernel CreateKernel() => new SumKernel((float)Lambda);

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

    /// <summary>
    /// λ·Σt τt over task memory: the τt added in task order, then multiplied by (float)λ, which is
    /// bit for bit what <see cref="MergeTensor"/> gives over a set that sums by reading each task
    /// (DARE's dropped task vectors). On the byte-level path it serves DARE; plain task arithmetic
    /// takes <see cref="LinearTaskWeights"/> there.
    /// </summary>
    private sealed unsafe class SumKernel(float lambda) : TaskBatchKernel
    {
        public override void Merge(string tensorName, TaskBatch batch, float* delta)
        {
            var output = (IntPtr)delta;
            FloatKernels.ForRanges(batch.Length, FloatKernels.Pieces(batch.Length), (_, start, end) => Sum(batch, (float*)output, start, end, lambda));
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Sum(TaskBatch batch, float* delta, long start, long end, float lambda)
        {
            int n = batch.Count;
            var tasks = new IntPtr[n];
            for (int t = 0; t < n; t++)
            {
                tasks[t] = (IntPtr)batch.Pointer(t);
            }

            // τt = θt − θ0 with a base; x − (+0) = x exactly without one.
            float* theta0 = batch.BasePointer;
            var scale = new Vector<float>(lambda);
            long i = start;
            for (; i + Vector<float>.Count <= end; i += Vector<float>.Count)
            {
                var b = theta0 is null ? Vector<float>.Zero : Unsafe.ReadUnaligned<Vector<float>>(theta0 + i);
                var sum = Unsafe.ReadUnaligned<Vector<float>>((float*)tasks[0] + i) - b;
                for (int t = 1; t < n; t++)
                {
                    sum += Unsafe.ReadUnaligned<Vector<float>>((float*)tasks[t] + i) - b;
                }

                Unsafe.WriteUnaligned(delta + i, sum * scale);
            }

            for (; i < end; i++)
            {
                float b = theta0 is null ? 0f : theta0[i];
                float sum = ((float*)tasks[0])[i] - b;
                for (int t = 1; t < n; t++)
                {
                    sum += ((float*)tasks[t])[i] - b;
                }

                delta[i] = sum * lambda;
            }
        }
    }
}
