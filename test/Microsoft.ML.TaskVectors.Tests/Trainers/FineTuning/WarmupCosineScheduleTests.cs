using Microsoft.ML.TaskVectors.Trainers.FineTuning;

namespace Microsoft.ML.TaskVectors.Tests.Trainers.FineTuning;

public class WarmupCosineScheduleTests
{
    [Test]
    public void RisesLinearlyThenFollowsTheHalfCosine()
    {
        var schedule = new WarmupCosineSchedule(2.0, WarmupSteps: 4, TotalSteps: 12);
        // Warm-up: 2·(s+1)/4. Decay over the 8 remaining steps: 2·½·(1 + cos(π·(s−4)/8)).
        double[] expected =
        [
            0.5, 1.0, 1.5, 2.0,
            2.0, 1 + Math.Cos(Math.PI / 8), 1 + Math.Cos(Math.PI / 4), 1 + Math.Cos(3 * Math.PI / 8),
            1.0, 1 + Math.Cos(5 * Math.PI / 8), 1 + Math.Cos(3 * Math.PI / 4), 1 + Math.Cos(7 * Math.PI / 8),
        ];
        Assert.That(Enumerable.Range(0, 12).Select(schedule.LearningRate), Is.EqualTo(expected).Within(1e-12));
    }

    [Test]
    public void WithoutWarmupStartsAtTheBaseRateAndWhenAllWarmupNeverDecays()
    {
        var cosine = new WarmupCosineSchedule(1.0, 0, 4);
        Assert.That(Enumerable.Range(0, 4).Select(cosine.LearningRate), Is.EqualTo(new[] { 1.0, 0.5 + 0.5 * Math.Sqrt(0.5), 0.5, 0.5 - 0.5 * Math.Sqrt(0.5) }).Within(1e-12));
        // task_vectors' default 500 warm-up steps in a 3-step run: the rate only ever climbs.
        var short_ = new WarmupCosineSchedule(1e-5, 500, 3);
        Assert.That(Enumerable.Range(0, 3).Select(short_.LearningRate), Is.EqualTo(new[] { 2e-8, 4e-8, 6e-8 }).Within(1e-20));
    }

    [Test]
    public void BadArgumentsAreNamed()
    {
        Assert.That(Assert.Throws<ArgumentException>(() => new WarmupCosineSchedule(0, 1, 2).LearningRate(0))!.ParamName, Is.EqualTo("BaseLearningRate"));
        Assert.That(Assert.Throws<ArgumentException>(() => new WarmupCosineSchedule(double.NaN, 1, 2).LearningRate(0))!.ParamName, Is.EqualTo("BaseLearningRate"));
        Assert.That(Assert.Throws<ArgumentException>(() => new WarmupCosineSchedule(1, -1, 2).LearningRate(0))!.ParamName, Is.EqualTo("WarmupSteps"));
        Assert.That(Assert.Throws<ArgumentException>(() => new WarmupCosineSchedule(1, 1, 0).LearningRate(0))!.ParamName, Is.EqualTo("TotalSteps"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new WarmupCosineSchedule(1, 1, 2).LearningRate(2));
        Assert.Throws<ArgumentOutOfRangeException>(() => new WarmupCosineSchedule(1, 1, 2).LearningRate(-1));
    }
}
