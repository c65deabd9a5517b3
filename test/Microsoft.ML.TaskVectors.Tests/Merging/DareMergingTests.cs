using Microsoft.ML.TaskVectors.Merging;
using Microsoft.ML.TaskVectors.TaskVectors;
using TorchSharp;
using static Microsoft.ML.TaskVectors.Tests.Merging.MergeTestData;

namespace Microsoft.ML.TaskVectors.Tests.Merging;

public class DareMergingTests
{
    private const int Size = 200_000;

    private static float[] Ramp(int n, int offset = 0) =>
        Enumerable.Range(0, n).Select(i => (0.5f + ((i + offset) % 11) * 0.25f) * ((i % 3 == 0) ? -1f : 1f)).ToArray(); // never 0

    [Test]
    public void DroppedAndRescaled_IsUnbiased_DropsFractionP_AndRescalesSurvivors()
    {
        const double p = 0.3;
        var tau = Ramp(Size);
        using var set = OneTensor("w", tau);
        // one task, task arithmetic with λ = 1 → the merge is exactly the dropped-and-rescaled τ
        var merged = Merge(new DareMerging(new TaskArithmetic(1.0), p, seed: 7), set, "w");

        int dropped = 0;
        for (int i = 0; i < Size; i++)
        {
            if (merged[i] == 0f)
            {
                dropped++;
            }
            else
            {
                // survivors are τ/(1 − p) = τ/0.7
                Assert.That(merged[i], Is.EqualTo(tau[i] / 0.7f).Within(1e-5f * Math.Abs(tau[i] / 0.7f)), $"entry {i}");
            }
        }

        // dropped fraction ≈ p within 4 binomial standard errors sqrt(p(1−p)/n)
        double fraction = dropped / (double)Size;
        Assert.That(fraction, Is.EqualTo(p).Within(4 * Math.Sqrt(p * (1 - p) / Size)));

        // mean: E[x̃] = τ, Var[x̃] = τ²·p/(1−p) → SE of the mean = sqrt(Σ τ² · p/(1−p)) / n
        double mean = merged.Average(x => (double)x);
        double original = tau.Average(x => (double)x);
        double standardError = Math.Sqrt(tau.Sum(x => (double)x * x) * p / (1 - p)) / Size;
        Assert.That(mean, Is.EqualTo(original).Within(4 * standardError));
    }

    [Test]
    public void SameTaskAndTensor_ReadTwice_GivesIdenticalValues_InAnyOrder()
    {
        using var set = MakeSet(
            new() { ["a"] = torch.tensor(Ramp(1000)), ["b"] = torch.tensor(Ramp(1000, 3)) },
            new() { ["a"] = torch.tensor(Ramp(1000, 5)), ["b"] = torch.tensor(Ramp(1000, 7)) });
        var first = new DropAndRescaleTaskVectorSet(set, 0.5, seed: 11);
        var second = new DropAndRescaleTaskVectorSet(set, 0.5, seed: 11);
        using var b1 = first.Get(1, "b");
        using var a0 = first.Get(0, "a");
        using var a0Again = second.Get(0, "a");
        using var b1Again = second.Get(1, "b");
        using var a0Third = first.Get(0, "a");
        Assert.That(Values(a0Again), Is.EqualTo(Values(a0)));
        Assert.That(Values(a0Third), Is.EqualTo(Values(a0)));
        Assert.That(Values(b1Again), Is.EqualTo(Values(b1)));
    }

    [Test]
    public void DifferentTasks_Tensors_AndSeeds_GetDifferentMasks()
    {
        var same = Ramp(Size);
        using var set = MakeSet(
            new() { ["a"] = torch.tensor(same), ["b"] = torch.tensor(same) },
            new() { ["a"] = torch.tensor(same), ["b"] = torch.tensor(same) });
        var dare = new DropAndRescaleTaskVectorSet(set, 0.5, seed: 3);
        var otherSeed = new DropAndRescaleTaskVectorSet(set, 0.5, seed: 4);
        bool[] Mask(ITaskVectorSet s, int task, string name)
        {
            using var t = s.Get(task, name);
            return Values(t).Select(v => v == 0f).ToArray();
        }

        var reference = Mask(dare, 0, "a");
        // Independent masks with p = 0.5 disagree on 2p(1−p) = 50 % of entries.
        foreach (var (other, label) in new[] { (Mask(dare, 1, "a"), "other task"), (Mask(dare, 0, "b"), "other tensor"), (Mask(otherSeed, 0, "a"), "other seed") })
        {
            double disagreement = reference.Zip(other).Count(x => x.First != x.Second) / (double)Size;
            Assert.That(disagreement, Is.EqualTo(0.5).Within(0.01), label);
        }
    }

    [Test]
    public void TensorNameHash_IsFnv1a64()
    {
        // Published FNV-1a 64-bit test vectors.
        Assert.That(StableHash.Fnv1a(""), Is.EqualTo(0xcbf29ce484222325UL));
        Assert.That(StableHash.Fnv1a("a"), Is.EqualTo(0xaf63dc4c8601ec8cUL));
        Assert.That(StableHash.Fnv1a("foobar"), Is.EqualTo(0x85944171f73967e8UL));
        Assert.That(StableHash.Seed(0, "x", 0), Is.Not.EqualTo(StableHash.Seed(0, "x", 1)));
    }

    [Test]
    public void DareTies_UsesTheSameMaskInPrepareAndMerge()
    {
        using var set = MakeSet(
            new() { ["a"] = torch.tensor(Ramp(300)), ["b"] = torch.tensor(Ramp(200, 1)) },
            new() { ["a"] = torch.tensor(Ramp(300, 4)), ["b"] = torch.tensor(Ramp(200, 9)) });
        var dare = new DareMerging(new TiesMerging(k: 0.3), p: 0.4, seed: 5);
        Assert.That(dare.Name, Is.EqualTo("dare-ties"));
        dare.Prepare(set);
        using var mergedA = dare.MergeTensor("a", set);
        using var mergedB = dare.MergeTensor("b", set);

        // Reference: materialise the dropped task vectors once, then run plain TIES on them.
        var dropped = new DropAndRescaleTaskVectorSet(set, 0.4, seed: 5);
        using var materialised = MakeSet(Enumerable.Range(0, 2).Select(t =>
            dropped.TensorNames.ToDictionary(n => n, n => dropped.Get(t, n))).ToArray());
        var ties = new TiesMerging(k: 0.3);
        ties.Prepare(materialised);
        using var expectedA = ties.MergeTensor("a", materialised);
        using var expectedB = ties.MergeTensor("b", materialised);
        Assert.That(Values(mergedA), Is.EqualTo(Values(expectedA)));
        Assert.That(Values(mergedB), Is.EqualTo(Values(expectedB)));
        Assert.That(Values(mergedA).Count(v => v != 0), Is.GreaterThan(0));
    }

    [Test]
    public void ZeroDropProbability_EqualsTheInnerMethod()
    {
        using var set = OneTensor("w", [1f, -2f, 3f], [3f, 4f, -1f]);
        // 0.5·([1, −2, 3] + [3, 4, −1]) = 0.5·[4, 2, 2] = [2, 1, 1]
        var dare = new DareMerging(new TaskArithmetic(0.5), p: 0);
        Assert.That(dare.Name, Is.EqualTo("dare-task-arithmetic"));
        Assert.That(Merge(dare, set, "w"), Is.EqualTo(new[] { 2f, 1f, 1f }).Within(1e-6));
    }
}
