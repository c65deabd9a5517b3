using Microsoft.ML.TaskVectors.Merging;

namespace Microsoft.ML.TaskVectors.Tests.Merging;

public class LambdaSelectionTests
{
    [Test]
    public void DefaultGrid_Is21ValuesComputedAsKOver20()
    {
        var grid = TaskArithmetic.DefaultGrid;
        Assert.That(grid, Has.Count.EqualTo(21));
        Assert.That(grid[0], Is.EqualTo(0.0));
        Assert.That(grid[20], Is.EqualTo(1.0));
        // Exactly the double nearest to 0.15 / 0.35 (accumulating 0.05 steps would give 0.15000000000000002, 0.35000000000000003).
        Assert.That(grid[3], Is.EqualTo(0.15));
        Assert.That(grid[7], Is.EqualTo(0.35));
        Assert.That(grid[6], Is.EqualTo(0.3));
    }

    [Test]
    public void SelectLambda_PicksBestMeanNormalisedAccuracy_NotBestRawAccuracy()
    {
        var table = new Dictionary<double, double[]>
        {
            [0.0] = [0.5, 0.2],
            [0.5] = [0.9, 0.3],
            [1.0] = [0.6, 0.5],
        };
        double[] finetuned = [1.0, 0.5];
        var calls = new List<double>();
        var result = TaskArithmetic.SelectLambda([0.0, 0.5, 1.0], l => { calls.Add(l); return table[l]; }, finetuned);

        // normalised means: λ=0: (0.5/1 + 0.2/0.5)/2 = (0.5 + 0.4)/2 = 0.45
        //                   λ=0.5: (0.9/1 + 0.3/0.5)/2 = (0.9 + 0.6)/2 = 0.75
        //                   λ=1: (0.6/1 + 0.5/0.5)/2 = (0.6 + 1.0)/2 = 0.80   ← best
        // (raw means would pick λ=0.5: 0.6 vs 0.55)
        Assert.That(calls, Is.EqualTo(new[] { 0.0, 0.5, 1.0 }));
        Assert.That(result.BestLambda, Is.EqualTo(1.0));
        Assert.That(result.BestMeanNormalizedAccuracy, Is.EqualTo(0.80).Within(1e-12));
        Assert.That(result.Evaluations.Select(e => e.Lambda), Is.EqualTo(new[] { 0.0, 0.5, 1.0 }));
        Assert.That(result.Evaluations.Select(e => e.MeanNormalizedAccuracy), Is.EqualTo(new[] { 0.45, 0.75, 0.80 }).Within(1e-12));
        Assert.That(result.Evaluations[1].Accuracies, Is.EqualTo(new[] { 0.9, 0.3 }));
    }

    [Test]
    public void SelectLambda_TiesGoToTheSmallerLambda_WhateverTheGridOrder()
    {
        // λ=0.75 and λ=0.25 both score (0.5/1 + 0.5/1)/2 = 0.5; λ=0.5 scores (0.25 + 0.25)/2 = 0.25.
        var table = new Dictionary<double, double[]>
        {
            [0.75] = [0.5, 0.5],
            [0.5] = [0.25, 0.25],
            [0.25] = [0.5, 0.5],
        };
        var result = TaskArithmetic.SelectLambda([0.75, 0.5, 0.25], l => table[l], [1.0, 1.0]);
        Assert.That(result.BestLambda, Is.EqualTo(0.25));
        Assert.That(result.BestMeanNormalizedAccuracy, Is.EqualTo(0.5));
    }

    [Test]
    public void SelectLambda_OnDefaultGrid_FindsPeakOfSmoothEvaluator()
    {
        // task 1 peaks at λ=0.3, task 2 at λ=0.5; fine-tuned accuracies 0.9 and 0.6.
        // normalised mean = ((0.9 − (λ−0.3)²)/0.9 + (0.6 − (λ−0.5)²)/0.6)/2, maximised where
        // (λ−0.3)/0.9 + (λ−0.5)/0.6 = 0 → 0.6λ − 0.18 + 0.9λ − 0.45 = 0 → λ = 0.63/1.5 = 0.42 → nearest grid point 0.4
        // (score at 0.40: (0.89/0.9 + 0.59/0.6)/2 = 0.98611; at 0.45: (0.8775/0.9 + 0.5975/0.6)/2 = 0.98542).
        var result = TaskArithmetic.SelectLambda(
            TaskArithmetic.DefaultGrid,
            l => [0.9 - (l - 0.3) * (l - 0.3), 0.6 - (l - 0.5) * (l - 0.5)],
            [0.9, 0.6]);
        Assert.That(result.BestLambda, Is.EqualTo(0.4));
        Assert.That(result.Evaluations, Has.Count.EqualTo(21));
        Assert.That(result.BestMeanNormalizedAccuracy, Is.EqualTo((0.89 / 0.9 + 0.59 / 0.6) / 2).Within(1e-12));
    }

    [Test]
    public void SelectLambda_RejectsAccuracyCountMismatch()
    {
        var ex = Assert.Throws<ArgumentException>(() =>
            TaskArithmetic.SelectLambda([0.0, 1.0], _ => [0.5], [0.9, 0.8]));
        Assert.That(ex!.Message, Does.Contain("1 accuracies").And.Contain("2 fine-tuned accuracies"));
    }

    [Test]
    public void SelectLambda_RejectsNonPositiveFinetunedAccuracy()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() =>
            TaskArithmetic.SelectLambda([0.0], _ => [0.5, 0.5], [0.9, 0.0]));
        Assert.That(ex!.ParamName, Is.EqualTo("finetunedAccuracies"));
        Assert.That(ex.Message, Does.Contain("task 1").And.Contain("> 0"));
    }

    [Test]
    public void SelectLambda_RejectsEmptyGrid()
    {
        var ex = Assert.Throws<ArgumentException>(() => TaskArithmetic.SelectLambda([], _ => [0.5], [0.9]));
        Assert.That(ex!.ParamName, Is.EqualTo("grid"));
    }
}
