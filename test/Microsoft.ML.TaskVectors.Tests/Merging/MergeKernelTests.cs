using Microsoft.ML.TaskVectors.Merging;
using Microsoft.ML.TaskVectors.TaskVectors;
using TorchSharp;
using static Microsoft.ML.TaskVectors.Tests.Merging.MergeTestData;

namespace Microsoft.ML.TaskVectors.Tests.Merging;

/// <summary>The C# merge kernels give bit for bit what the libtorch tensor formulations give.</summary>
public class MergeKernelTests
{
    /// <summary>TIES as a sequence of tensor operations (the formulation the kernel replaces).</summary>
    private static torch.Tensor ReferenceTies(torch.Tensor[] taus, float?[] thresholds, bool mean, double lambda)
    {
        using var scope = torch.NewDisposeScope();
        var kept = taus.Select((tau, t) => thresholds[t] is float thr
            ? tau.clone().masked_fill_(tau.abs().lt(thr), 0.0f)
            : torch.zeros_like(tau)).ToArray();
        var sum = kept[0].clone();
        foreach (var k in kept.Skip(1)) sum.add_(k);
        var elected = sum.sign_();
        long signBalance = elected.sum(torch.ScalarType.Int64).item<long>();
        elected.masked_fill_(elected.eq(0.0f), signBalance >= 0 ? 1.0f : -1.0f);
        var agreeingSum = torch.zeros_like(elected);
        var agreeingCount = torch.zeros_like(elected);
        foreach (var values in kept)
        {
            var agrees = values.sign().eq_(elected);
            agreeingSum.add_(values.mul(agrees));
            agreeingCount.add_(agrees);
        }

        var merged = mean ? agreeingSum.div_(agreeingCount.clamp_min_(1.0f)) : agreeingSum;
        return merged.mul_(lambda).MoveToOuterDisposeScope();
    }

    private static float[] Data(Random rng, int length, double negativeBias, bool special)
    {
        var values = new float[length];
        for (int i = 0; i < length; i++)
        {
            double u = rng.NextDouble();
            values[i] = u switch
            {
                // small multiples of 0.5 make exactly-zero sums and ties at the threshold common
                < 0.5 => (rng.Next(0, 7) * 0.5f) * (rng.NextDouble() < negativeBias ? -1f : 1f),
                < 0.55 => 0f,
                < 0.56 => -0f,
                _ => (float)((rng.NextDouble() * 2 - 2 * negativeBias) * Math.Pow(2, rng.Next(-30, 3))),
            };
            if (special && rng.Next(2000) == 0)
            {
                values[i] = rng.Next(3) switch { 0 => float.NaN, 1 => float.PositiveInfinity, _ => float.NegativeInfinity };
            }
        }

        return values;
    }

    private static void AssertBitwiseEqual(float[] actual, float[] expected)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length));
        int mismatches = 0;
        int first = -1;
        for (int i = 0; i < actual.Length; i++)
        {
            bool same = float.IsNaN(actual[i]) ? float.IsNaN(expected[i]) : BitConverter.SingleToInt32Bits(actual[i]) == BitConverter.SingleToInt32Bits(expected[i]);
            if (!same)
            {
                mismatches++;
                if (first < 0) first = i;
            }
        }

        Assert.That(mismatches, Is.Zero, first < 0 ? "" : $"first at {first}: {actual[first]:R} vs {expected[first]:R}");
    }

    [TestCase(1, 100_003, 0.5, true, 1.0, false)]
    [TestCase(3, 100_003, 0.5, true, 0.3, false)]
    [TestCase(4, 70_001, 0.7, true, 0.3, false)]   // negative majority: zero sums take −
    [TestCase(4, 70_001, 0.3, false, 1.0, false)]
    [TestCase(5, 1_001, 0.5, false, 0.7, true)]    // one task keeps nothing
    [TestCase(8, 33, 0.8, false, 1.0, false)]
    [TestCase(2, 7, 0.5, false, 2.5, false)]       // shorter than a vector
    public void TiesKernel_EqualsTensorFormulation_BitForBit(int tasks, int length, double negativeBias, bool special, double lambda, bool keepNothing)
    {
        var rng = new Random(tasks * 1000 + length);
        using var scope = torch.NewDisposeScope();
        var taus = Enumerable.Range(0, tasks).Select(_ => torch.tensor(Data(rng, length, negativeBias, special))).ToArray();
        var thresholds = Enumerable.Range(0, tasks).Select(t => (float?)(t % 3 == 0 ? 0.5f : t % 3 == 1 ? 1e-6f : 0f)).ToArray();
        if (keepNothing) thresholds[1] = null;
        // The same τt given as θt = τt + θ0 with θ0 left for the kernel to subtract.
        var baseValues = torch.tensor(Data(rng, length, 0.5, special: false));
        var finetuned = taus.Select(tau => tau.add(baseValues)).ToArray();
        var differences = finetuned.Select(f => f.sub(baseValues)).ToArray();
        foreach (bool mean in new[] { true, false })
        {
            var expected = ReferenceTies(taus, thresholds, mean, lambda);
            var actual = torch.empty(length);
            TiesKernel.Merge(new TaskTensorBatch(taus), thresholds, mean, (float)lambda, actual);
            AssertBitwiseEqual(Values(actual), Values(expected));

            var expectedFromBase = ReferenceTies(differences, thresholds, mean, lambda);
            TiesKernel.Merge(new TaskTensorBatch(finetuned, baseValues), thresholds, mean, (float)lambda, actual);
            AssertBitwiseEqual(Values(actual), Values(expectedFromBase));
        }
    }

    [Test]
    public void TiesMergeTensor_EqualsTensorFormulation_ForBothRankings()
    {
        var rng = new Random(5);
        const int length = 50_000;
        var tasks = Enumerable.Range(0, 3).Select(_ => Data(rng, length, 0.5, special: false)).ToArray();
        using var set = MakeSet(tasks.Select(v => new Dictionary<string, torch.Tensor> { ["w"] = torch.tensor(v, new long[] { 250, 200 }) }).ToArray());
        foreach (var ranking in new[] { TiesRanking.Global, TiesRanking.PerTensor })
        {
            var ties = new TiesMerging(k: 0.3, lambda: 0.4, ranking: ranking);
            ties.Prepare(set);
            using var scope = torch.NewDisposeScope();
            var taus = Enumerable.Range(0, 3).Select(t => set.Get(t, "w")).ToArray();
            var thresholds = Enumerable.Range(0, 3).Select(t => ranking == TiesRanking.Global
                ? ties.GetGlobalThreshold(t)
                : MagnitudeThreshold.Find(taus[t], MagnitudeThreshold.KeepCount(0.3, length))).ToArray();
            var expected = ReferenceTies(taus, thresholds, mean: true, lambda: 0.4);
            var actual = ties.MergeTensor("w", set);
            Assert.That(actual.shape, Is.EqualTo(new long[] { 250, 200 }));
            AssertBitwiseEqual(Values(actual), Values(expected));
        }
    }

    [TestCase(1, false)]
    [TestCase(8, false)]
    [TestCase(1, true)]
    [TestCase(8, true)]
    public void Threshold_OfLargeTensors_EqualsBruteForce(int tensors, bool withBase)
    {
        // Large enough to be split over the cores (one tensor) or spread over them (many tensors).
        var rng = new Random(tensors);
        var values = Enumerable.Range(0, tensors).Select(_ => Data(rng, 300_001, 0.5, special: false)).ToArray();
        var baseValues = Data(rng, 300_001, 0.5, special: false);
        using var scope = torch.NewDisposeScope();
        var baseTensor = torch.tensor(baseValues);
        var ts = values.Select(v => withBase ? torch.tensor(v).add_(baseTensor) : torch.tensor(v)).ToArray();
        var batch = withBase ? new TaskTensorBatch(ts, baseTensor) : new TaskTensorBatch(ts);
        // τ as torch computes it (θ − θ0 rounded to float32).
        var taus = withBase ? ts.Select(t => Values(t.sub(baseTensor))).ToArray() : values;
        foreach (long count in new long[] { 1, 12_345, 150_000, 300_001 })
        {
            var found = MagnitudeThreshold.Find(batch, Enumerable.Repeat(count, tensors).ToArray());
            for (int t = 0; t < tensors; t++)
            {
                var sorted = taus[t].Select(MathF.Abs).OrderByDescending(x => x).ToArray();
                Assert.That(found[t], Is.EqualTo(sorted[count - 1]), $"tensor {t}, count {count}");
                if (!withBase)
                {
                    Assert.That(MagnitudeThreshold.Find(ts[t], count), Is.EqualTo(sorted[count - 1]));
                }
            }
        }

        Assert.That(MagnitudeThreshold.Find(batch, new long[tensors]), Is.All.Null);
    }

    [TestCase(false)]
    [TestCase(true)]
    public void SmallTensorThresholdInMemory_EqualsTheHistograms(bool withBase)
    {
        var rng = new Random(withBase ? 21 : 20);
        using var scope = torch.NewDisposeScope();
        const int length = 5_003; // ≤ InMemoryLimit: ranked in memory
        var baseTensor = torch.tensor(Data(rng, length, 0.5, special: false));
        var ts = Enumerable.Range(0, 3).Select(_ => torch.tensor(Data(rng, length, 0.5, special: true))).ToArray();
        var batch = withBase ? new TaskTensorBatch(ts, baseTensor) : new TaskTensorBatch(ts);
        foreach (long count in new long[] { 1, 2, 7, 100, 2_500, 4_999, length })
        {
            var found = MagnitudeThreshold.Find(batch, new[] { count, count, count });
            for (int t = 0; t < 3; t++)
            {
                var tau = withBase ? ts[t].sub(baseTensor) : ts[t];
                var expected = MagnitudeThreshold.Find(count, visit => visit(tau)); // two histogram passes
                Assert.That(found[t].HasValue, Is.True);
                Assert.That(BitConverter.SingleToInt32Bits(found[t]!.Value), Is.EqualTo(BitConverter.SingleToInt32Bits(expected!.Value)), $"task {t}, count {count}");
            }
        }
    }

    [Test]
    public void PoolOverOneBase_GivesWhatReadingEachTaskGives_ForDareAndTies()
    {
        using var dir = new TempDirectory();
        var (basePath, fts) = RandomCheckpoints.Write(dir, tasks: 3, seed: 9);
        using var @base = Microsoft.ML.TaskVectors.Checkpoints.Checkpoint.Open(basePath);
        var checkpoints = fts.Select(Microsoft.ML.TaskVectors.Checkpoints.Checkpoint.Open).ToArray();
        try
        {
            using var pool = TaskVectorPool.FromCheckpoints(@base, checkpoints, TensorFilter.ClipVisionTower);
            Assert.That(pool.ReadDifferenceParts(pool.TensorNames[0]), Is.Not.Null, "the pool shares one base");
            // The same task vectors held in memory: read one task at a time, no shared base.
            using var copy = new InMemoryTaskVectorSet(pool.TaskNames, Enumerable.Range(0, pool.Count)
                .Select(t => (IReadOnlyDictionary<string, torch.Tensor>)pool.TensorNames.ToDictionary(n => n, n => pool.Get(t, n))).ToArray());
            var dareOnPool = new DropAndRescaleTaskVectorSet(pool, 0.4, seed: 2);
            var dareOnCopy = new DropAndRescaleTaskVectorSet(copy, 0.4, seed: 2);
            foreach (var name in pool.TensorNames)
            {
                using var scope = torch.NewDisposeScope();
                var batch = TaskTensors.ReadAll(dareOnPool, name);
                for (int t = 0; t < pool.Count; t++)
                {
                    AssertBitwiseEqual(Values(batch[t]), Values(dareOnCopy.Get(t, name)));
                    AssertBitwiseEqual(Values(dareOnPool.Get(t, name)), Values(dareOnCopy.Get(t, name)));
                }

                AssertBitwiseEqual(Values(dareOnPool.Sum(name)), Values(dareOnCopy.Sum(name)));
            }

            foreach (var method in new MergeMethod[] { new TiesMerging(k: 0.3), new TiesMerging(k: 0.3, ranking: TiesRanking.PerTensor), new DareMerging(new TiesMerging(k: 0.3), 0.4, seed: 2) })
            {
                MergeMethod twin = method is DareMerging ? new DareMerging(new TiesMerging(k: 0.3), 0.4, seed: 2) : new TiesMerging(k: 0.3, ranking: ((TiesMerging)method).Ranking);
                method.Prepare(pool);
                twin.Prepare(copy);
                foreach (var name in pool.TensorNames)
                {
                    using var a = method.MergeTensor(name, pool);
                    using var b = twin.MergeTensor(name, copy);
                    AssertBitwiseEqual(Values(a), Values(b));
                }
            }
        }
        finally
        {
            foreach (var c in checkpoints) c.Dispose();
        }
    }

    [Test]
    public void DareMask_FollowsTheDocumentedSplitMix64Stream()
    {
        const double p = 0.3;
        const long seed = 42;
        var tau = Enumerable.Range(0, 200_003).Select(i => 0.25f + (i % 17) * 0.5f).ToArray();
        using var set = OneTensor("layer.weight", tau, tau);
        var dare = new DropAndRescaleTaskVectorSet(set, p, seed);
        ulong threshold = DropAndRescaleTaskVectorSet.DropThreshold(p);
        Assert.That(threshold, Is.EqualTo((ulong)(0.3 * Math.Pow(2, 64))));
        Assert.That(DropAndRescaleTaskVectorSet.DropThreshold(0.5), Is.EqualTo(1UL << 63));
        float scale = (float)(1.0 / (1.0 - p));
        for (int task = 0; task < 2; task++)
        {
            using var dropped = dare.Get(task, "layer.weight");
            var values = Values(dropped);
            ulong key = StableHash.Seed(seed, "layer.weight", task);
            for (int i = 0; i < tau.Length; i++)
            {
                ulong r = StableHash.Mix(unchecked(key + (ulong)i * 0x9E3779B97F4A7C15UL));
                float expected = r < threshold ? 0f : tau[i] * scale;
                if (values[i] != expected)
                {
                    Assert.Fail($"task {task}, entry {i}: {values[i]} vs {expected}");
                }
            }
        }

        // Sum agrees with Get.
        using var scope = torch.NewDisposeScope();
        using var all0 = dare.Get(0, "layer.weight");
        using var all1 = dare.Get(1, "layer.weight");
        using var sum = dare.Sum("layer.weight");
        Assert.That(Values(sum), Is.EqualTo(Values(all0.add(all1))));
    }
}
