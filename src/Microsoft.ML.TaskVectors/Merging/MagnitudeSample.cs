using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Runtime.CompilerServices;
using Microsoft.ML.TaskVectors.Runtime;
using Microsoft.ML.TaskVectors.TaskVectors;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// A sample of every task's |τ| (a histogram of 65,536 bins of their bit patterns), taken as blocks of consecutive
/// entries at seeded positions (the same for every task), from which <see cref="MagnitudeThreshold"/> guesses for
/// each task a window of magnitudes that holds its count-th largest.
/// </summary>
/// <remarks>
/// The window is the sample's estimate widened by a margin of standard errors on each side. Entries in a
/// block are correlated (rows of one tensor share a scale), so the standard error is that of a
/// cluster sample, computed from the spread between blocks, and never below the independent one. The spread
/// is measured on at least <see cref="VarianceBlocks"/> blocks spread over the sample (every block when there are
/// fewer than twice as many), the only ones whose entries are kept: the histogram alone serves the estimate, so the
/// sample costs little memory however large it is.
/// </remarks>
internal sealed unsafe class MagnitudeSample : IDisposable
{
    /// <summary>Block of a sample read from files: 4 KB of float32, one read each.</summary>
    internal const int StreamBlock = 1024;

    /// <summary>One block per this many entries (1/64) when reading from files.</summary>
    internal const int StreamStride = 64 * StreamBlock;

    /// <summary>Block of a sample taken from memory.</summary>
    internal const int InMemoryBlock = 256;

    /// <summary>One block per this many entries (1/16) in memory.</summary>
    internal const int InMemoryStride = 16 * InMemoryBlock;

    /// <summary>
    /// Standard errors on each side of the estimate when a miss costs a pass over everything (one
    /// search over a whole model): a miss is then all but impossible.
    /// </summary>
    internal const double WideMargin = 6;

    /// <summary>
    /// Standard errors on each side when a miss costs only another read of one tensor (one of many
    /// searches, or a tensor in memory): a few misses are cheaper than collecting twice as much every time.
    /// </summary>
    internal const double NarrowMargin = 3;

    /// <summary>
    /// Fewest blocks the spread between blocks is measured on: enough for its standard error to be within
    /// about 9% of itself (√(2/255)), which a margin of several standard errors absorbs.
    /// </summary>
    internal const int VarianceBlocks = 256;

    /// <summary>Smallest sample a guess is made from.</summary>
    private const int MinimumSize = 4096;

    /// <summary>Bits dropped from a magnitude's bit pattern for the sample's histogram (65,536 bins).</summary>
    private const int Shift = 15;

    private const int HistogramBins = 1 << (31 - Shift);

    /// <summary>
    /// Histograms returned clean (only the bins between a sample's lowest and highest were used, and only
    /// those are cleared): the per-tensor searches sample every tensor, and fresh arrays would cost their
    /// page faults, whole-array clears their time, each time.
    /// </summary>
    private static readonly ConcurrentBag<IntPtr> CleanHistograms = [];

    private readonly int _tasks;
    private readonly long*[][] _histograms; // [worker][task], taken from the pool on the worker's first block
    private readonly int[][] _lowest;
    private readonly int[][] _highest;
    private readonly ushort*[] _kept;
    private readonly ushort* _keptMemory;
    private readonly bool _keptInHugePages;
    private readonly IReadOnlyList<long> _blockLengths;
    private readonly int[] _keptStart; // per block: where its entries go in the kept arrays, or −1
    private readonly int[] _keptBlocks; // the kept blocks, in order
    private readonly int _keptCount;
    private readonly bool[] _added;
    private int _next;
    private bool _combined;
    private bool _disposed;

    /// <summary>An empty sample of <paramref name="tasks"/> tasks that will take blocks of these lengths.</summary>
    /// <param name="tasks">Number of tasks.</param>
    /// <param name="blockLengths">Entries of each block, by block index.</param>
    /// <param name="varianceBlocks">Fewest blocks whose entries are kept for the spread between blocks (every block when there are fewer than twice as many).</param>
    /// <param name="workers">Threads that may add blocks at once (see <see cref="Add(int, int, TaskBatch)"/>).</param>
    public MagnitudeSample(int tasks, IReadOnlyList<long> blockLengths, int varianceBlocks = VarianceBlocks, int workers = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(varianceBlocks, 2);
        ArgumentOutOfRangeException.ThrowIfLessThan(workers, 1);
        _tasks = tasks;
        _blockLengths = blockLengths;
        int keepEvery = Math.Max(1, blockLengths.Count / varianceBlocks);
        _keptStart = new int[blockLengths.Count];
        var keptBlocks = new List<int>();
        long kept = 0;
        for (int block = 0; block < blockLengths.Count; block++)
        {
            _keptStart[block] = block % keepEvery == 0 ? (int)Math.Min(kept, int.MaxValue) : -1;
            if (block % keepEvery == 0)
            {
                keptBlocks.Add(block);
                kept += blockLengths[block];
            }
        }

        if (kept > int.MaxValue)
        {
            throw new ArgumentException($"The sample's variance blocks hold {kept} entries per task; at most {int.MaxValue} are supported.", nameof(blockLengths));
        }

        _keptBlocks = [.. keptBlocks];
        _keptCount = (int)kept;
        _added = new bool[blockLengths.Count];
        _histograms = new long*[workers][];
        _lowest = new int[workers][];
        _highest = new int[workers][];
        _kept = new ushort*[tasks];
        long keptBytes = Math.Max(1, kept) * sizeof(ushort) * (long)tasks;
        _keptInHugePages = keptBytes >= 2 << 20; // the whole model's sample: fresh 4 KB pages would cost more than its reading
        _keptMemory = (ushort*)(_keptInHugePages ? HugePageMemory.Allocate(keptBytes) : NativeMemory.Alloc((nuint)keptBytes));
        for (int t = 0; t < tasks; t++)
        {
            _kept[t] = _keptMemory + t * Math.Max(1, kept);
        }
    }

    /// <summary>Zeroed histograms from the pool, one per task.</summary>
    private static long*[] TakeHistograms(int tasks)
    {
        var histograms = new long*[tasks];
        for (int t = 0; t < tasks; t++)
        {
            histograms[t] = CleanHistogram();
        }

        return histograms;
    }

    /// <summary>A zeroed histogram from the pool; the pool grows by four at a time, in one 2 MB piece of huge pages.</summary>
    private static long* CleanHistogram()
    {
        if (CleanHistograms.TryTake(out var clean))
        {
            return (long*)clean;
        }

        const int Batch = 4;
        long bytes = (long)Batch * HistogramBins * sizeof(long);
        var memory = (long*)HugePageMemory.Allocate(bytes); // kept for the process's life, as pooled histograms are
        NativeMemory.Clear(memory, (nuint)bytes);
        for (int k = 1; k < Batch; k++)
        {
            CleanHistograms.Add((IntPtr)(memory + (long)k * HistogramBins));
        }

        return memory;
    }

    /// <summary>
    /// The sampled blocks of the entries [<paramref name="start"/>, <paramref name="start"/> +
    /// <paramref name="length"/>) of a stream: one block of <paramref name="block"/> entries at a
    /// seeded, block-aligned position in each <paramref name="stride"/> of the stream, cut at the range's
    /// ends. Positions are absolute in the stream, so the tensors of a model sample as one stream.
    /// </summary>
    public static IEnumerable<(long Start, long Length)> Blocks(long start, long length, int block, int stride)
    {
        long end = start + length;
        for (long window = start / stride * stride; window < end; window += stride)
        {
            long first = window + (long)(StableHash.Mix((ulong)(window / stride)) % (ulong)(stride / block)) * block;
            long from = Math.Max(first, start), to = Math.Min(first + block, end);
            if (to > from)
            {
                yield return (from, to - from);
            }
        }
    }

    /// <summary>Adds the next block (blocks added one after another, from one thread).</summary>
    public void Add(TaskBatch batch)
    {
        if (_next == _blockLengths.Count)
        {
            throw new InvalidOperationException($"The sample was made for {_blockLengths.Count} blocks; all have been added.");
        }

        Add(0, _next++, batch);
    }

    /// <summary>
    /// Adds block <paramref name="block"/>: the histogram bins of |τt| of every task of <paramref name="batch"/>.
    /// Different workers (0 … workers − 1) may add blocks at once; each block is added once.
    /// </summary>
    public void Add(int worker, int block, TaskBatch batch)
    {
        if (batch.Count != _tasks)
        {
            throw new ArgumentException($"The batch has {batch.Count} tasks; the sample has {_tasks}.", nameof(batch));
        }

        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)block, (uint)_blockLengths.Count, nameof(block));
        if (batch.Length != _blockLengths[block])
        {
            throw new InvalidOperationException($"Block {block} of the sample has {_blockLengths[block]} entries; the batch has {batch.Length}.");
        }

        if (_added[block])
        {
            throw new InvalidOperationException($"Block {block} of the sample was added twice.");
        }

        _added[block] = true;
        var histograms = _histograms[worker] ??= TakeHistograms(_tasks);
        var lowest = _lowest[worker] ??= Enumerable.Repeat(HistogramBins, _tasks).ToArray();
        var highest = _highest[worker] ??= Enumerable.Repeat(-1, _tasks).ToArray();
        int keptAt = _keptStart[block];
        for (int t = 0; t < _tasks; t++)
        {
            Bins(batch.Pointer(t), batch.BasePointer, batch.Length, histograms[t], keptAt >= 0 ? _kept[t] + keptAt : null, ref lowest[t], ref highest[t]);
        }
    }

    /// <summary>Adds the other workers' histograms into the first one's (once, after the last block).</summary>
    private void Combine()
    {
        if (_combined)
        {
            return;
        }

        _combined = true;
        int first = Array.FindIndex(_histograms, h => h is not null);
        if (first < 0)
        {
            return;
        }

        (_histograms[0], _histograms[first]) = (_histograms[first], _histograms[0]);
        (_lowest[0], _lowest[first]) = (_lowest[first], _lowest[0]);
        (_highest[0], _highest[first]) = (_highest[first], _highest[0]);
        for (int w = 1; w < _histograms.Length; w++)
        {
            if (_histograms[w] is not { } histograms)
            {
                continue;
            }

            for (int t = 0; t < _tasks; t++)
            {
                for (int bin = _lowest[w][t]; bin <= _highest[w][t]; bin++)
                {
                    _histograms[0][t][bin] += histograms[t][bin];
                }

                _lowest[0][t] = Math.Min(_lowest[0][t], _lowest[w][t]);
                _highest[0][t] = Math.Max(_highest[0][t], _highest[w][t]);
            }
        }
    }

    /// <summary>
    /// Counts |τ[i]|'s bin (its bit pattern &gt;&gt; <see cref="Shift"/>; τ = x − b, or x when b is null), keeps
    /// it when asked, and widens [<paramref name="lowest"/>, <paramref name="highest"/>] to the bins seen.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Bins(float* x, float* b, long n, long* histogram, ushort* kept, ref int lowest, ref int highest)
    {
        int low = lowest, high = highest;
        for (long i = 0; i < n; i++)
        {
            int bin = (int)((MagnitudeThreshold.Bits(x, b, i) & MagnitudeThreshold.MagnitudeMask) >> Shift);
            histogram[bin]++;
            low = Math.Min(low, bin);
            high = Math.Max(high, bin);
            if (kept is not null)
            {
                kept[i] = (ushort)bin;
            }
        }

        (lowest, highest) = (low, high);
    }

    /// <summary>
    /// For each task with a count above 0, a window of magnitudes that holds its
    /// <paramref name="counts"/>[t]-th largest among <paramref name="total"/> entries with
    /// overwhelming probability; null when the sample is too small to guess from.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public MagnitudeThreshold.Window[]? Guess(IReadOnlyList<long> counts, long total, double margin = WideMargin)
    {
        int blocks = 0;
        long s = 0;
        for (int block = 0; block < _added.Length; block++)
        {
            if (_added[block])
            {
                blocks++;
                s += _blockLengths[block];
            }
        }

        if (s < MinimumSize || blocks < 2)
        {
            return null;
        }

        Combine();
        var windows = new MagnitudeThreshold.Window[_tasks];
        for (int t = 0; t < _tasks; t++)
        {
            if (counts[t] <= 0)
            {
                continue;
            }

            // Bins above the highest seen are empty: the walks from the top start there.
            var histogram = new ReadOnlySpan<long>(_histograms[0][t], _highest[0][t] + 1);
            double q = counts[t] / (double)total;
            int estimate = MagnitudeThreshold.Walk(histogram, Math.Clamp((long)Math.Round(q * s), 1, s)).Bin;
            // The kept blocks' spread, scaled from their number to the sample's: the variance of a mean of blocks goes as 1/blocks.
            var (clusterVariance, keptBlocks) = ClusterVariance(new ReadOnlySpan<ushort>(_kept[t], _keptCount), estimate);
            clusterVariance *= keptBlocks / (double)blocks;
            double sigma = Math.Sqrt(Math.Max(clusterVariance, q * (1 - q) / s));
            double width = margin * sigma + 1.0 / s;
            long highRank = (long)Math.Floor((q - width) * s);
            long lowRank = (long)Math.Ceiling((q + width) * s);
            uint high = highRank < 1 ? 1u << 31 : Edge(histogram, highRank, upper: true);
            uint low = lowRank > s ? 0 : Edge(histogram, lowRank, upper: false);
            windows[t] = MagnitudeThreshold.Window.Between(low, high);
        }

        return windows;
    }

    /// <summary>
    /// An edge of the slot of the sample's <paramref name="rank"/>-th largest magnitude (1-based), taking the
    /// entries of its histogram bin as spread evenly over the bin's bit patterns (a bin is 1/256 of an octave,
    /// across which the density is all but flat): the slot's upper end (exclusive), or its lower end. Cutting
    /// inside the bins rather than at their edges narrows a window by about a bin at each end.
    /// </summary>
    private static uint Edge(ReadOnlySpan<long> histogram, long rank, bool upper)
    {
        var (bin, rankInBin) = MagnitudeThreshold.Walk(histogram, rank);
        long c = histogram[bin];
        long slots = upper ? c - rankInBin + 1 : c - rankInBin; // slots from the bin's bottom to the edge, of c
        long offset = upper ? ((slots << Shift) + c - 1) / c : (slots << Shift) / c;
        return ((uint)bin << Shift) + (uint)offset;
    }

    /// <summary>
    /// Variance of the proportion of magnitudes in bin <paramref name="estimate"/> or above among the kept
    /// blocks that were added, with whole blocks as the sampled units: B/(B−1)·Σb (cb − p·nb)² / s² (B blocks
    /// of s entries in all); and B.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private (double Variance, int Blocks) ClusterVariance(ReadOnlySpan<ushort> bins, int estimate)
    {
        var counts = new List<(long Above, long Entries)>();
        long above = 0, entries = 0;
        foreach (int block in _keptBlocks)
        {
            if (!_added[block])
            {
                continue;
            }

            long c = 0;
            foreach (ushort b in bins.Slice(_keptStart[block], (int)_blockLengths[block]))
            {
                c += b >= estimate ? 1 : 0;
            }

            counts.Add((c, _blockLengths[block]));
            above += c;
            entries += _blockLengths[block];
        }

        if (counts.Count < 2)
        {
            return (0, counts.Count);
        }

        double p = above / (double)entries, sum = 0;
        foreach (var (c, n) in counts)
        {
            double d = c - p * n;
            sum += d * d;
        }

        return (counts.Count / (counts.Count - 1.0) * sum / ((double)entries * entries), counts.Count);
    }

    /// <summary>Frees the sample's buffers.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        for (int w = 0; w < _histograms.Length; w++)
        {
            if (_histograms[w] is not { } histograms)
            {
                continue;
            }

            for (int t = 0; t < _tasks; t++)
            {
                if (_highest[w][t] >= _lowest[w][t])
                {
                    new Span<long>(histograms[t] + _lowest[w][t], _highest[w][t] - _lowest[w][t] + 1).Clear();
                }

                CleanHistograms.Add((IntPtr)histograms[t]);
            }

            _histograms[w] = null!;
        }

        if (_keptInHugePages)
        {
            HugePageMemory.Free(_keptMemory);
        }
        else
        {
            NativeMemory.Free(_keptMemory);
        }
    }
}
