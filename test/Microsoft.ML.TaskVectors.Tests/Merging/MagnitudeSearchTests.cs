using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Merging;
using Microsoft.ML.TaskVectors.Runtime;
using Microsoft.ML.TaskVectors.TaskVectors;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Merging;

/// <summary>
/// The magnitude search behind TIES's thresholds on inputs large enough to be sampled first: exact
/// whatever the sample guesses, one pass after the sample on realistic data, and samples that read
/// the same values as whole tensors do.
/// </summary>
public unsafe class MagnitudeSearchTests
{
    private const int Length = 1_200_000; // above MagnitudeThreshold.SampledFrom

    /// <summary>Rows of 600 entries with their own scale (as weight matrices have), or many exact ties.</summary>
    private static float[] Values(Random rng, int length, bool ties)
    {
        var v = new float[length];
        double scale = 1;
        for (int i = 0; i < length; i++)
        {
            if (i % 600 == 0) scale = Math.Exp(rng.NextDouble() * 4 - 2);
            v[i] = ties
                ? rng.Next(0, 5) * 0.25f * (rng.Next(2) == 0 ? -1 : 1)
                : (float)(scale * (rng.NextDouble() * 2 - 1) * 1e-3);
        }

        return v;
    }

    private static float KthLargest(float[] values, long count)
    {
        var m = values.Select(MathF.Abs).ToArray();
        Array.Sort(m);
        return m[^(int)count];
    }

    private static readonly long[] Counts = [1, 777, Length / 5, Length - 1, Length];

    [TestCase(false)]
    [TestCase(true)]
    public void SampledSearchInMemory_EqualsSorting(bool ties)
    {
        var rng = new Random(ties ? 2 : 1);
        var tasks = Enumerable.Range(0, 3).Select(_ => Values(rng, Length, ties)).ToArray();
        fixed (float* a = tasks[0], b = tasks[1], c = tasks[2])
        {
            var batch = new TaskBatch([(IntPtr)a, (IntPtr)b, (IntPtr)c], null, Length);
            foreach (long count in Counts)
            {
                var found = MagnitudeThreshold.Find(batch, [count, count, count]);
                for (int t = 0; t < 3; t++)
                    Assert.That(found[t], Is.EqualTo(KthLargest(tasks[t], count)), $"task {t}, count {count}");
            }
        }
    }

    [Test]
    public void FirstWindowsThatMissOrOverflow_StillGiveTheExactAnswer()
    {
        var values = Values(new Random(3), Length, ties: false);
        long count = Length / 5;
        float expected = KthLargest(values, count);
        uint bits = BitConverter.SingleToUInt32Bits(expected);
        var windows = new[]
        {
            new MagnitudeThreshold.Window(bits + 1, bits + 100),        // entirely above the answer
            new MagnitudeThreshold.Window(bits - 100, bits),            // entirely below it
            new MagnitudeThreshold.Window(bits, bits + 1),              // exactly it
            MagnitudeThreshold.Window.All,                              // collects every entry: overflows into histograms
        };
        fixed (float* p = values)
        {
            var batch = new TaskBatch([(IntPtr)p], null, Length);
            foreach (var w in windows)
                Assert.That(MagnitudeThreshold.Find(batch, [count], [w])[0], Is.EqualTo(expected), $"first window {w}");
        }
    }

    [TestCase(0.3)]   // 4 workers collect 90k each: the first adopts the others' collections and selects over all four
    [TestCase(1.0)]   // 300k each: the third adoption would pass the cap of 1M, so the collections turn into a histogram
    public void CollectionsOfManyWorkers_GiveTheExactAnswer(double fractionInside)
    {
        var values = Values(new Random(9), Length, ties: false);
        long count = Length / 5;
        float expected = KthLargest(values, count);
        var sorted = values.Select(v => BitConverter.SingleToUInt32Bits(v) & MagnitudeThreshold.MagnitudeMask).Order().ToArray();
        int low = (int)(Length * 0.8 - Length * fractionInside / 2), high = (int)(Length * 0.8 + Length * fractionInside / 2);
        var window = fractionInside >= 1 ? MagnitudeThreshold.Window.All : new MagnitudeThreshold.Window(sorted[Math.Max(0, low)], sorted[Math.Min(Length - 1, high)]);
        fixed (float* p = values)
        {
            var batch = new TaskBatch([(IntPtr)p], null, Length);
            Assert.That(MagnitudeThreshold.Find(batch, [count], [window], workers: 4)[0], Is.EqualTo(expected), $"window {window}");
        }
    }

    [Test]
    public void SearchOverASource_TakesOnePassAfterItsSample()
    {
        var rng = new Random(4);
        var shapes = new long[][] { [700, 800], [600, 1000], [300] };
        var tasks = Enumerable.Range(0, 2).Select(_ => shapes.Select(s => Values(rng, (int)s.Aggregate(1L, (a, b) => a * b), ties: false)).ToArray()).ToArray();
        using var set = MergeTestData.MakeSet(tasks.Select(task => shapes.Select((s, i) => ($"t{i}", tensor(task[i], s)))
            .ToDictionary(x => x.Item1, x => x.Item2)).ToArray());
        var source = new CountingSource(TaskTensors.Source(set));
        long total = tasks[0].Sum(v => (long)v.Length);
        long count = MagnitudeThreshold.KeepCount(0.2, total);
        var found = MagnitudeThreshold.Find(source, [count, count], null, default);
        for (int t = 0; t < 2; t++)
            Assert.That(found[t], Is.EqualTo(KthLargest(tasks[t].SelectMany(v => v).ToArray(), count)), $"task {t}");
        Assert.That(source.Reads, Is.EqualTo(shapes.Length), $"one pass over the tensors (sampled {source.SampledEntries})");
        Assert.That(source.SampledEntries, Is.InRange(total / 100, total / 40), "about 1/64 of the entries sampled");
    }

    [Test]
    public void SearchOverLayersOfVeryDifferentScales_StillTakesOnePass()
    {
        // Layers whose task-vector magnitudes differ 30-fold make the sample's blocks disagree: the
        // window widens with the between-block spread but still holds the answer.
        var rng = new Random(7);
        double[] scales = [1, 3, 10, 30];
        var tasks = Enumerable.Range(0, 2).Select(_ => scales.Select(scale =>
            Values(rng, 300_000, ties: false).Select(v => (float)(v * scale)).ToArray()).ToArray()).ToArray();
        using var set = MergeTestData.MakeSet(tasks.Select(task => task.Select((v, i) => ($"layer{i}", tensor(v)))
            .ToDictionary(x => x.Item1, x => x.Item2)).ToArray());
        var source = new CountingSource(TaskTensors.Source(set));
        long count = MagnitudeThreshold.KeepCount(0.2, 4 * 300_000L);
        var found = MagnitudeThreshold.Find(source, [count, count], null, default);
        for (int t = 0; t < 2; t++)
            Assert.That(found[t], Is.EqualTo(KthLargest(tasks[t].SelectMany(v => v).ToArray(), count)), $"task {t}");
        Assert.That(source.Reads, Is.EqualTo(scales.Length), "one pass over the layers");
    }

    [Test]
    public void SampleSpreadFromEveryFewBlocks_GivesTheWindowOfTheWholeSample()
    {
        // 4M entries sampled as 977 blocks: every 3rd block's entries are kept for the spread between
        // blocks. Its window must hold the answer and be about as wide as when every block is kept;
        // without scaling the spread to the whole sample's block count it would be about √3 wider.
        const int population = 4_000_000;
        var values = Values(new Random(8), population, ties: false);
        long count = population / 5;
        uint answer = BitConverter.SingleToUInt32Bits(KthLargest(values, count));
        var blocks = MagnitudeSample.Blocks(0, population, MagnitudeSample.InMemoryBlock, MagnitudeSample.InMemoryStride).ToArray();
        var lengths = blocks.Select(b => b.Length).ToArray();
        Assert.That(lengths.Length / MagnitudeSample.VarianceBlocks, Is.EqualTo(3), "the test's premise: every 3rd block kept");

        long Inside(MagnitudeThreshold.Window w) =>
            values.LongCount(v => (BitConverter.SingleToUInt32Bits(v) & MagnitudeThreshold.MagnitudeMask) is var b && b >= w.Low && b < w.High);

        fixed (float* p = values)
        {
            var batch = new TaskBatch([(IntPtr)p], null, population);
            MagnitudeThreshold.Window Guess(int varianceBlocks)
            {
                using var sample = new MagnitudeSample(1, lengths, varianceBlocks);
                foreach (var (start, length) in blocks)
                    sample.Add(batch.Slice(start, length));
                return sample.Guess([count], population)![0];
            }

            var spread = Guess(MagnitudeSample.VarianceBlocks);
            var whole = Guess(int.MaxValue);
            foreach (var w in new[] { spread, whole })
                Assert.That(answer, Is.InRange(w.Low, w.High - 1), $"window {w} holds the answer");
            Assert.That(Inside(spread) / (double)Inside(whole), Is.InRange(0.7, 1.4), $"entries inside {spread} against {whole}");

            using var strict = new MagnitudeSample(1, lengths);
            Assert.That(() => strict.Add(batch.Slice(0, lengths[0] + 1)),
                Throws.InvalidOperationException.With.Message.Contains($"Block 0 of the sample has {lengths[0]} entries"));
        }
    }

    [Test]
    public void SampleWindows_CutInsideTheHistogramBins_HoldTheAnswer_AndAreNarrowerThanWholeBins()
    {
        // The window's edges are cut where the sample's rank falls inside a bin, taking the bin's entries as
        // spread evenly over it. For several populations of independent entries (windows a few bins wide)
        // the window must hold the answer and cut both edge bins; together the windows must hold at least
        // 5% fewer entries than the same windows widened to whole bins (the edges used before; how much an
        // edge saves depends on where in its bin it falls).
        const int population = 2_000_000;
        const int binPatterns = 1 << 15;
        var blocks = MagnitudeSample.Blocks(0, population, MagnitudeSample.InMemoryBlock, MagnitudeSample.InMemoryStride).ToArray();
        var lengths = blocks.Select(b => b.Length).ToArray();
        long cut = 0, whole = 0;
        foreach (int seed in new[] { 11, 12, 13, 14 })
        {
            var rng = new Random(seed);
            var values = Enumerable.Range(0, population).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
            long count = population / 5;
            uint answer = BitConverter.SingleToUInt32Bits(KthLargest(values, count));
            MagnitudeThreshold.Window window;
            fixed (float* p = values)
            {
                var batch = new TaskBatch([(IntPtr)p], null, population);
                using var sample = new MagnitudeSample(1, lengths);
                foreach (var (start, length) in blocks)
                    sample.Add(batch.Slice(start, length));
                window = sample.Guess([count], population)![0];
            }

            var wholeBins = new MagnitudeThreshold.Window(window.Low / binPatterns * binPatterns, (window.High + binPatterns - 1) / binPatterns * binPatterns);
            long Inside(MagnitudeThreshold.Window w) =>
                values.LongCount(v => (BitConverter.SingleToUInt32Bits(v) & MagnitudeThreshold.MagnitudeMask) is var b && b >= w.Low && b < w.High);
            Assert.That(answer, Is.InRange(window.Low, window.High - 1), $"seed {seed}: window {window} holds the answer");
            Assert.That(window.Low, Is.GreaterThan(wholeBins.Low), $"seed {seed}: low edge inside its bin");
            Assert.That(window.High, Is.LessThan(wholeBins.High), $"seed {seed}: high edge inside its bin");
            cut += Inside(window);
            whole += Inside(wholeBins);
        }

        Assert.That(cut, Is.LessThan(0.95 * whole), "entries inside the windows against whole bins");
    }

    [Test]
    public void LargeStreams_CollectInHugePages_WithTheSameAnswers()
    {
        // 2.4M entries of one task: a collection may pass 4 MB, so the collections are mapped in huge pages;
        // a window of every magnitude makes the workers' collections adopt each other and then overflow.
        const int length = 2_400_000;
        var values = Values(new Random(9), length, ties: false);
        var sorted = values.Select(MathF.Abs).ToArray();
        Array.Sort(sorted);
        fixed (float* p = values)
        {
            var batch = new TaskBatch([(IntPtr)p], null, length);
            foreach (long count in new long[] { 1, length / 5, length - 1 })
            {
                float expected = sorted[^(int)count];
                Assert.That(MagnitudeThreshold.Find(batch, [count])[0], Is.EqualTo(expected), $"count {count}");
                Assert.That(MagnitudeThreshold.Find(batch, [count], [MagnitudeThreshold.Window.All], workers: 4)[0], Is.EqualTo(expected), $"count {count}, every magnitude");
            }
        }
    }

    [Test]
    public void SampleFilledByWorkersAtOnce_GuessesWhatOneThreadGuesses()
    {
        // 4 workers add the blocks side by side, each into histograms of its own, in no particular order;
        // the windows must be those of adding every block in order, and a block added twice is refused.
        const int population = 3_000_000;
        var values = Values(new Random(10), population, ties: false);
        var blocks = MagnitudeSample.Blocks(0, population, MagnitudeSample.InMemoryBlock, MagnitudeSample.InMemoryStride).ToArray();
        var lengths = blocks.Select(b => b.Length).ToArray();
        long[] counts = [population / 5];
        fixed (float* p = values)
        {
            var batch = new TaskBatch([(IntPtr)p], null, population);
            using var alone = new MagnitudeSample(1, lengths);
            foreach (var (start, length) in blocks)
                alone.Add(batch.Slice(start, length));

            using var together = new MagnitudeSample(1, lengths, workers: 4);
            Parallel.For(0, 4, new ParallelOptions { MaxDegreeOfParallelism = 4 }, worker =>
            {
                for (int block = blocks.Length - 1 - worker; block >= 0; block -= 4)
                    together.Add(worker, block, batch.Slice(blocks[block].Start, blocks[block].Length));
            });

            Assert.That(together.Guess(counts, population), Is.EqualTo(alone.Guess(counts, population)));
            Assert.That(() => together.Add(0, 3, batch.Slice(blocks[3].Start, blocks[3].Length)),
                Throws.InvalidOperationException.With.Message.Contains("Block 3 of the sample was added twice"));
        }
    }

    [Test]
    public void HugePageMemory_KeepsContentsWhenReallocated()
    {
        const int entries = 3 << 20; // 12 MB
        var a = (int*)HugePageMemory.Allocate(entries * sizeof(int));
        Assert.That(((IntPtr)a).ToInt64() % (OperatingSystem.IsLinux() ? 2 << 20 : 64), Is.Zero, "aligned");
        for (int i = 0; i < entries; i++)
            a[i] = i * 7;
        var grown = (int*)HugePageMemory.Reallocate(a, entries * sizeof(int), 2L * entries * sizeof(int));
        Assert.That(grown[entries - 1], Is.EqualTo((entries - 1) * 7), "the last kept entry");
        grown[2 * entries - 1] = -1;
        var shrunk = (int*)HugePageMemory.Reallocate(grown, 2L * entries * sizeof(int), 10 * sizeof(int));
        try
        {
            Assert.That(new ReadOnlySpan<int>(shrunk, 10).ToArray(), Is.EqualTo(Enumerable.Range(0, 10).Select(i => i * 7).ToArray()));
        }
        finally
        {
            HugePageMemory.Free(shrunk);
        }
    }

    [Test]
    public void PerTensorSearch_EqualsSortingEachTensor_ReadingSampledTensorsOnce()
    {
        var rng = new Random(6);
        // One chunk (ranked in memory), between a chunk and SampledFrom (two histogram passes), sampled (one pass).
        var shapes = new long[][] { [100, 300], [400, 400], [700, 800], [900, 500] };
        var tasks = Enumerable.Range(0, 3).Select(_ => shapes.Select(s => Values(rng, (int)s.Aggregate(1L, (a, b) => a * b), ties: false)).ToArray()).ToArray();
        using var set = MergeTestData.MakeSet(tasks.Select(task => shapes.Select((s, i) => ($"t{i}", tensor(task[i], s)))
            .ToDictionary(x => x.Item1, x => x.Item2)).ToArray());
        var source = new CountingSource(TaskTensors.Source(set));
        var found = MagnitudeThreshold.FindPerTensor(source, length => MagnitudeThreshold.KeepCount(0.3, length), null, default);
        for (int i = 0; i < shapes.Length; i++)
            for (int t = 0; t < 3; t++)
                Assert.That(found[$"t{i}"][t], Is.EqualTo(KthLargest(tasks[t][i], MagnitudeThreshold.KeepCount(0.3, tasks[t][i].Length))), $"tensor {i}, task {t}");
        Assert.That(source.ReadsOf, Is.EqualTo(new Dictionary<string, int> { ["t0"] = 1, ["t1"] = 2, ["t2"] = 1, ["t3"] = 1 }));
    }

    [TestCase(true)]
    [TestCase(false)]
    public void DropsOfARange_AreThoseOfTheWholeTensor(bool withBase)
    {
        var rng = new Random(5);
        const int n = 10_000;
        var x = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        var b = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        var whole = (float[])x.Clone();
        fixed (float* pw = whole, pb = b)
            DropAndRescaleTaskVectorSet.DropAndRescale(pw, withBase ? pb : null, n, key: 99, p: 0.4);
        foreach (var (start, length) in new[] { (0, 7), (13, 1000), (4_099, 5_901), (9_999, 1) })
        {
            var part = x.AsSpan(start, length).ToArray();
            fixed (float* pp = part, pb = b)
                DropAndRescaleTaskVectorSet.DropAndRescale(pp, withBase ? pb + start : null, length, key: 99, p: 0.4, first: start);
            Assert.That(part, Is.EqualTo(whole.AsSpan(start, length).ToArray()), $"[{start}, {start + length})");
        }
    }

    [TestCase(ScalarType.Float32)]
    [TestCase(ScalarType.Float16)]
    [TestCase(ScalarType.BFloat16)]
    public void FileRanges_HoldWhatTheWholeTensorHolds(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDirectory();
        const string name = "vision_model.encoder.layers.0.mlp.fc1.weight";
        var (basePath, finetuned) = RandomCheckpoints.Write(dir, tasks: 2, dtype, layout: [(name, [300, 70])]);
        using var @base = Checkpoint.Open(basePath);
        var sources = finetuned.Select(Checkpoint.Open).ToArray();
        using var pool = TaskVectorPool.FromCheckpoints(@base, sources, TensorFilter.ClipVisionTower);
        using var files = MergeInputFiles.TryOpen(@base, pool)!;
        // The whole tensor as the chunks give it (each chunk copied into place).
        var wholeValues = Enumerable.Range(0, 3).Select(_ => new float[300 * 70]).ToArray();
        files.ReadChunks(name, (_, start, chunk) =>
        {
            for (int i = 0; i < 3; i++)
                new Span<float>(i < 2 ? chunk.Pointer(i) : chunk.BasePointer, (int)chunk.Length).CopyTo(wholeValues[i].AsSpan((int)start));
        });
        using (var expected = pool.Get(1, name))
            Assert.That(wholeValues[1].Zip(wholeValues[2], (f, b) => f - b).ToArray(), Is.EqualTo(expected.data<float>().ToArray()), "chunks hold θt and θ0");
        (long, long)[] ranges = [(0, 5), (64, 1000), (20_000, 1)];
        int seen = 0;
        files.ReadRanges(0, name, ranges, (start, batch) =>
        {
            Assert.That(batch.Length, Is.EqualTo(ranges[seen++].Item2));
            for (int i = 0; i < 3; i++)
            {
                var p = i < 2 ? batch.Pointer(i) : batch.BasePointer;
                Assert.That(new Span<float>(p, (int)batch.Length).ToArray(), Is.EqualTo(wholeValues[i].AsSpan((int)start, (int)batch.Length).ToArray()), $"input {i} at {start}");
            }
        });
        Assert.That(seen, Is.EqualTo(ranges.Length));
        foreach (var s in sources) s.Dispose();
    }

    /// <summary>A source that counts tensor reads and sampled entries.</summary>
    private sealed class CountingSource(ITaskBatchSource inner) : ITaskBatchSource
    {
        public int Reads { get; private set; }

        public long SampledEntries { get; private set; }

        public int Count => inner.Count;

        public IReadOnlyList<string> TensorNames => inner.TensorNames;

        public int Workers => inner.Workers;

        public long[] GetShape(string tensorName) => inner.GetShape(tensorName);

        public Dictionary<string, int> ReadsOf { get; } = [];

        public void ReadChunks(string tensorName, Action<int, long, TaskBatch> use)
        {
            Reads++;
            ReadsOf[tensorName] = ReadsOf.GetValueOrDefault(tensorName) + 1;
            inner.ReadChunks(tensorName, use);
        }

        public void ReadRanges(int worker, string tensorName, IReadOnlyList<(long Start, long Length)> ranges, Action<long, TaskBatch> use)
        {
            lock (ReadsOf)
            {
                SampledEntries += ranges.Sum(r => r.Length);
            }

            inner.ReadRanges(worker, tensorName, ranges, use);
        }
    }
}
