using Microsoft.ML.TaskVectors.Merging;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Tests.Merging;

public class GlobalThresholdTests
{
    public enum Kind { Normal, FewDistinct, WideExponents }

    private static float[] RandomValues(Random rng, int count, Kind kind)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++)
        {
            values[i] = kind switch
            {
                // many exactly equal magnitudes (and zeros): {0, ±0.25, ±0.5, …, ±2}
                Kind.FewDistinct => (rng.Next(0, 9) * 0.25f) * (rng.Next(2) == 0 ? -1f : 1f),
                // magnitudes spanning ~60 binades, including subnormals (2^-140)
                Kind.WideExponents => (float)((rng.NextDouble() + 0.5) * Math.Pow(2, rng.Next(-140, 20))) * (rng.Next(2) == 0 ? -1f : 1f),
                _ => (float)(rng.NextDouble() * 2 - 1) * 0.01f,
            };
        }

        return values;
    }

    private static float BruteForceThreshold(IEnumerable<float[]> tensors, long count)
    {
        var magnitudes = tensors.SelectMany(v => v).Select(MathF.Abs).ToArray();
        Array.Sort(magnitudes);
        Array.Reverse(magnitudes);
        return magnitudes[count - 1];
    }

    [TestCase(Kind.Normal, new[] { 7 }, 0.2)]
    [TestCase(Kind.Normal, new[] { 3, 1000, 17 * 5 }, 0.2)]
    [TestCase(Kind.Normal, new[] { 257 * 300, 1 }, 0.01)]
    [TestCase(Kind.FewDistinct, new[] { 1000, 999 }, 0.2)]
    [TestCase(Kind.FewDistinct, new[] { 50, 50, 50 }, 0.5)]
    [TestCase(Kind.FewDistinct, new[] { 10, 20 }, 1.0)]
    [TestCase(Kind.WideExponents, new[] { 5000, 123 }, 0.3)]
    [TestCase(Kind.WideExponents, new[] { 100 }, 0.01)]
    [TestCase(Kind.Normal, new[] { (1 << 20) + 4097, 64 }, 0.2)]
    public void HistogramThreshold_EqualsBruteForceSort(Kind kind, int[] sizes, double k)
    {
        var rng = new Random(1234 + sizes.Sum());
        var tasks = Enumerable.Range(0, 2).Select(_ => sizes.Select(n => RandomValues(rng, n, kind)).ToArray()).ToArray();
        var tensorNames = sizes.Select((_, i) => $"t{i}").ToArray();
        using var set = MergeTestData.MakeSet(tasks.Select(task =>
            tensorNames.Select((name, i) => (name, tensor: torch.tensor(task[i]))).ToDictionary(x => x.name, x => x.tensor)).ToArray());

        long d = sizes.Sum(n => (long)n);
        long count = MagnitudeThreshold.KeepCount(k, d);
        Assert.That(count, Is.GreaterThan(0));
        var ties = new TiesMerging(k: k);
        ties.Prepare(set);
        for (int t = 0; t < tasks.Length; t++)
        {
            float expected = BruteForceThreshold(tasks[t], count);
            Assert.That(ties.GetGlobalThreshold(t), Is.EqualTo(expected), $"task {t}");

            // The kept set honours the definition: at least `count` entries ≥ threshold, fewer than `count` above it.
            var all = tasks[t].SelectMany(v => v).Select(MathF.Abs).ToArray();
            Assert.That(all.Count(x => x >= expected), Is.GreaterThanOrEqualTo(count));
            Assert.That(all.Count(x => x > expected), Is.LessThan(count));
        }
    }

    [Test]
    public void HistogramThreshold_OfOneTensor_MatchesKthLargest()
    {
        // |x| = [0.5, 4, 1, 3, 2, 4] sorted descending: 4, 4, 3, 2, 1, 0.5
        using var t = torch.tensor(new[] { -0.5f, 4f, 1f, -3f, 2f, -4f });
        Assert.That(MagnitudeThreshold.Find(t, 1), Is.EqualTo(4f));
        Assert.That(MagnitudeThreshold.Find(t, 2), Is.EqualTo(4f));
        Assert.That(MagnitudeThreshold.Find(t, 3), Is.EqualTo(3f));
        Assert.That(MagnitudeThreshold.Find(t, 6), Is.EqualTo(0.5f));
        Assert.That(MagnitudeThreshold.Find(t, 0), Is.Null);
    }
}
