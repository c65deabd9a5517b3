using System.Runtime.InteropServices;
using System.Runtime.CompilerServices;
using Microsoft.ML.TaskVectors.TaskVectors;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// A sample of every task's |τ| (as 65,536 bins of their bit patterns), taken as blocks of consecutive entries at seeded
/// positions (the same for every task), from which <see cref="MagnitudeThreshold"/> guesses for each
/// task a window of magnitudes that holds its count-th largest.
/// </summary>
/// <remarks>
/// The window is the sample's estimate widened by a margin of standard errors on each side. Entries in a
/// block are correlated (rows of one tensor share a scale), so the standard error is that of a
/// cluster sample, computed from the spread between blocks, and never below the independent one.
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

    /// <summary>Smallest sample a guess is made from.</summary>
    private const int MinimumSize = 4096;

    /// <summary>Bits dropped from a magnitude's bit pattern for the sample's histogram (65,536 bins).</summary>
    private const int Shift = 15;

    /// <summary>The guesses' histogram, kept per thread: a fresh 512 KB array would cost its page faults every tensor.</summary>
    [ThreadStatic]
    private static long[]? _histogram;

    private readonly ushort*[] _bins;
    private readonly long _capacity;
    private readonly List<int> _blockEnds = [];
    private int _count;

    /// <summary>An empty sample of <paramref name="tasks"/> tasks with room for <paramref name="capacity"/> entries each.</summary>
    public MagnitudeSample(int tasks, long capacity)
    {
        _capacity = Math.Min(capacity, int.MaxValue);
        _bins = new ushort*[tasks];
        for (int t = 0; t < tasks; t++)
        {
            _bins[t] = (ushort*)NativeMemory.Alloc((nuint)Math.Max(1, _capacity), sizeof(ushort));
        }
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

    /// <summary>Adds one block: the histogram bins of |τt| of every task of <paramref name="batch"/>.</summary>
    public void Add(TaskBatch batch)
    {
        if (batch.Count != _bins.Length)
        {
            throw new ArgumentException($"The batch has {batch.Count} tasks; the sample has {_bins.Length}.", nameof(batch));
        }

        if (_count + batch.Length > _capacity)
        {
            throw new InvalidOperationException($"The sample holds {_capacity} entries per task; adding {batch.Length} more would exceed it.");
        }

        for (int t = 0; t < _bins.Length; t++)
        {
            Bins(batch.Pointer(t), batch.BasePointer, batch.Length, _bins[t] + _count);
        }

        _count += (int)batch.Length;
        _blockEnds.Add(_count);
    }

    /// <summary>bins[i] = |τ[i]|'s bit pattern &gt;&gt; <see cref="Shift"/> (τ = x − b, or x when b is null).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Bins(float* x, float* b, long n, ushort* bins)
    {
        for (long i = 0; i < n; i++)
        {
            bins[i] = (ushort)((MagnitudeThreshold.Bits(x, b, i) & MagnitudeThreshold.MagnitudeMask) >> Shift);
        }
    }

    /// <summary>
    /// For each task with a count above 0, a window of magnitudes that holds its
    /// <paramref name="counts"/>[t]-th largest among <paramref name="total"/> entries with
    /// overwhelming probability; null when the sample is too small to guess from.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public MagnitudeThreshold.Window[]? Guess(IReadOnlyList<long> counts, long total, double margin = WideMargin)
    {
        int s = _count;
        if (s < MinimumSize || _blockEnds.Count < 2)
        {
            return null;
        }

        var windows = new MagnitudeThreshold.Window[_bins.Length];
        var histogram = _histogram ??= new long[1 << (31 - Shift)];
        for (int t = 0; t < _bins.Length; t++)
        {
            if (counts[t] <= 0)
            {
                continue;
            }

            var bins = new ReadOnlySpan<ushort>(_bins[t], s);
            Array.Clear(histogram);
            foreach (ushort b in bins)
            {
                histogram[b]++;
            }

            double q = counts[t] / (double)total;
            int estimate = MagnitudeThreshold.Walk(histogram, Math.Clamp((long)Math.Round(q * s), 1, s)).Bin;
            double sigma = Math.Sqrt(Math.Max(ClusterVariance(bins, estimate), q * (1 - q) / s));
            double width = margin * sigma + 1.0 / s;
            long highRank = (long)Math.Floor((q - width) * s);
            long lowRank = (long)Math.Ceiling((q + width) * s);
            uint high = highRank < 1 ? 1u << 31 : (uint)(MagnitudeThreshold.Walk(histogram, highRank).Bin + 1) << Shift;
            uint low = lowRank > s ? 0 : (uint)MagnitudeThreshold.Walk(histogram, lowRank).Bin << Shift;
            windows[t] = MagnitudeThreshold.Window.Between(low, high);
        }

        return windows;
    }

    /// <summary>
    /// Variance of the sampled proportion of magnitudes in bin <paramref name="estimate"/> or above
    /// when whole blocks are the sampled units: B/(B−1)·Σb (cb − p·nb)² / s².
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private double ClusterVariance(ReadOnlySpan<ushort> bits, int estimate)
    {
        var counts = new long[_blockEnds.Count];
        long above = 0;
        int start = 0;
        for (int block = 0; block < _blockEnds.Count; block++)
        {
            long c = 0;
            foreach (ushort b in bits[start.._blockEnds[block]])
            {
                c += b >= estimate ? 1 : 0;
            }

            counts[block] = c;
            above += c;
            start = _blockEnds[block];
        }

        double p = above / (double)bits.Length, sum = 0;
        start = 0;
        for (int block = 0; block < counts.Length; block++)
        {
            double d = counts[block] - p * (_blockEnds[block] - start);
            sum += d * d;
            start = _blockEnds[block];
        }

        int blocks = counts.Length;
        return blocks / (blocks - 1.0) * sum / ((double)bits.Length * bits.Length);
    }

    /// <summary>Frees the sample's buffers.</summary>
    public void Dispose()
    {
        for (int t = 0; t < _bins.Length; t++)
        {
            NativeMemory.Free(_bins[t]);
            _bins[t] = null;
        }
    }
}
