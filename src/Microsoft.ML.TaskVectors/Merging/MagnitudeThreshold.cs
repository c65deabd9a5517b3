using System.Buffers;
using System.Runtime.Intrinsics;
using System.Runtime.CompilerServices;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// Exact "count-th largest magnitude" over a stream of tensors, without concatenating them: a
/// two-level histogram over the IEEE-754 bit pattern of |x|. For non-negative floats the uint32
/// bit pattern is monotonic in the value, so pass 1 counts the top 16 bits into 65,536 bins and
/// finds the bin that holds the count-th largest entry, and pass 2 counts the low 16 bits of the
/// entries inside that bin. The two bins give the exact threshold bits. Memory is two fixed
/// histograms per stream, independent of the model size.
/// </summary>
/// <remarks>
/// The histograms are counted in C# straight from the tensors' float32 memory: |x|'s bits are x's
/// bits with the sign bit cleared (what torch.abs gives, NaN included), so no temporary tensor is
/// made; for a <see cref="TaskBatch"/> with a base, τ = θ − θ0 is formed in registers with
/// the same float32 subtraction torch would do. The tasks of a batch are spread over the cores,
/// or a single large tensor is split over them.
/// </remarks>
internal static unsafe class MagnitudeThreshold
{
    /// <summary>Bins per level (16 bits).</summary>
    internal const int Bins = 1 << 16;

    private const uint MagnitudeMask = 0x7FFF_FFFF;

    /// <summary>
    /// Keep count floor(k·d). Computed in decimal so that e.g. k = 0.29, d = 100 gives 29 rather
    /// than 28 from the binary rounding of 0.29.
    /// </summary>
    public static long KeepCount(double k, long entries)
    {
        if (k <= 0 || entries <= 0)
        {
            return 0;
        }

        if (k >= 1)
        {
            return entries;
        }

        return (long)decimal.Floor((decimal)k * entries);
    }

    /// <summary>Adds the histogram of the top 16 bits of |x| of <paramref name="values"/> to <paramref name="histogram"/>.</summary>
    public static void AccumulateHigh(torch.Tensor values, long[] histogram)
    {
        using var scope = torch.NewDisposeScope();
        AccumulateHigh(new TaskTensorBatch([values]), [histogram]);
    }

    /// <summary>
    /// Adds the histogram of the low 16 bits of |x| to <paramref name="histogram"/>, counting only
    /// the entries whose top 16 bits equal <paramref name="highBin"/>.
    /// </summary>
    public static void AccumulateLow(torch.Tensor values, int highBin, long[] histogram)
    {
        using var scope = torch.NewDisposeScope();
        AccumulateLow(new TaskTensorBatch([values]), [highBin], [histogram]);
    }

    /// <summary>
    /// For each task t, adds the histogram of the top 16 bits of |τt| to <paramref name="histograms"/>[t]
    /// (a null histogram skips that task).
    /// </summary>
    public static void AccumulateHigh(TaskBatch batch, IReadOnlyList<long[]?> histograms) =>
        Accumulate(batch, histograms, null);

    /// <summary>
    /// For each task t, adds to <paramref name="histograms"/>[t] the histogram of the low 16 bits of
    /// |τt| over the entries whose top 16 bits equal <paramref name="highBins"/>[t] (a null histogram
    /// skips that task).
    /// </summary>
    public static void AccumulateLow(TaskBatch batch, IReadOnlyList<int> highBins, IReadOnlyList<long[]?> histograms) =>
        Accumulate(batch, histograms, highBins);

    /// <summary>Tensors up to this many entries are ranked by sorting their magnitude bits rather than by histograms.</summary>
    internal const int SortLimit = 1 << 16;

    /// <summary>
    /// The exact <paramref name="counts"/>[t]-th largest |τt| of each task's tensor in the batch
    /// (null where the count is 0). Small tensors sort their |τ| bit patterns (the order the
    /// histograms use, so the result is the same); larger ones count both histogram passes for all
    /// tasks together, in histograms borrowed from a pool.
    /// </summary>
    public static float?[] Find(TaskBatch batch, IReadOnlyList<long> counts)
    {
        int n = batch.Count;
        if (counts.Count != n || counts.Any(c => c > batch.Length))
        {
            throw new ArgumentException($"One count per task is needed, none above the {batch.Length} entries.", nameof(counts));
        }

        var thresholds = new float?[n];
        if (batch.Length <= SortLimit)
        {
            var bits = ArrayPool<uint>.Shared.Rent((int)batch.Length);
            try
            {
                for (int t = 0; t < n; t++)
                {
                    if (counts[t] > 0)
                    {
                        thresholds[t] = BySorting(batch, t, counts[t], bits.AsSpan(0, (int)batch.Length));
                    }
                }
            }
            finally
            {
                ArrayPool<uint>.Shared.Return(bits);
            }

            return thresholds;
        }

        var high = new long[]?[n];
        var low = new long[]?[n];
        try
        {
            for (int t = 0; t < n; t++)
            {
                high[t] = counts[t] > 0 ? Rent() : null;
            }

            AccumulateHigh(batch, high);
            var highBins = new int[n];
            var ranks = new long[n];
            for (int t = 0; t < n; t++)
            {
                if (high[t] is { } h)
                {
                    (highBins[t], ranks[t]) = Select(h, counts[t]);
                    low[t] = Rent();
                }
            }

            AccumulateLow(batch, highBins, low);
            for (int t = 0; t < n; t++)
            {
                if (low[t] is { } l)
                {
                    thresholds[t] = FromBits(highBins[t], Select(l, ranks[t]).Bin);
                }
            }

            return thresholds;
        }
        finally
        {
            foreach (var h in high.Concat(low))
            {
                if (h is not null)
                {
                    ArrayPool<long>.Shared.Return(h);
                }
            }
        }

        static long[] Rent()
        {
            var h = ArrayPool<long>.Shared.Rent(Bins);
            Array.Clear(h, 0, Bins);
            return h;
        }
    }

    /// <summary>The count-th largest |τt| of a small tensor: its |τ| bit patterns sorted (count ≥ 1).</summary>
    private static float BySorting(TaskBatch batch, int task, long count, Span<uint> bits)
    {
        var x = batch.Pointer(task);
        var b = batch.BasePointer;
        for (int i = 0; i < bits.Length; i++)
        {
            bits[i] = Bits(x, b, i) & MagnitudeMask;
        }

        bits.Sort();
        return BitConverter.UInt32BitsToSingle(bits[bits.Length - (int)count]);
    }

    /// <summary>
    /// Walks <paramref name="histogram"/> from the largest bin down and returns the bin holding the
    /// <paramref name="rank"/>-th largest entry (1-based) and that entry's rank inside the bin.
    /// </summary>
    public static (int Bin, long RankInBin) Select(long[] histogram, long rank)
    {
        long above = 0;
        for (int bin = histogram.Length - 1; bin >= 0; bin--)
        {
            if (above + histogram[bin] >= rank)
            {
                return (bin, rank - above);
            }

            above += histogram[bin];
        }

        throw new InvalidOperationException($"Rank {rank} exceeds the {above} counted entries.");
    }

    /// <summary>The float whose bit pattern is <c>(high &lt;&lt; 16) | low</c>.</summary>
    public static float FromBits(int high, int low) => BitConverter.Int32BitsToSingle((high << 16) | low);

    /// <summary>
    /// The exact magnitude of the <paramref name="count"/>-th largest |x| over the tensors produced
    /// by <paramref name="readPass"/> (called twice, once per pass), or null when count is 0 (keep
    /// nothing).
    /// </summary>
    public static float? Find(long count, Action<Action<torch.Tensor>> readPass)
    {
        if (count <= 0)
        {
            return null;
        }

        var high = new long[Bins];
        readPass(t => AccumulateHigh(t, high));
        var (highBin, rankInBin) = Select(high, count);
        var low = new long[Bins];
        readPass(t => AccumulateLow(t, highBin, low));
        var (lowBin, _) = Select(low, rankInBin);
        return FromBits(highBin, lowBin);
    }

    /// <summary>The count-th largest magnitude of one in-memory tensor, or null when count is 0.</summary>
    public static float? Find(torch.Tensor values, long count) => Find(count, visit => visit(values));

    /// <summary>
    /// Counts high bins (<paramref name="highBins"/> null) or low bins of each task into its
    /// histogram: whole tensors per core when there are at least as many tasks as cores, else each
    /// tensor split over the cores into private histograms that are then added up.
    /// </summary>
    private static void Accumulate(TaskBatch batch, IReadOnlyList<long[]?> histograms, IReadOnlyList<int>? highBins)
    {
        int n = batch.Count;
        if (histograms.Count != n || (highBins is not null && highBins.Count != n))
        {
            throw new ArgumentException("One histogram (and high bin) is needed per task.");
        }

        if (histograms.Any(h => h is not null && h.Length != Bins))
        {
            throw new ArgumentException($"A histogram must have {Bins} bins.", nameof(histograms));
        }

        long length = batch.Length;
        void One(int t, long start, long end, long[] histogram)
        {
            var x = batch.Pointer(t) + start;
            var b = batch.BasePointer is null ? null : batch.BasePointer + start;
            if (highBins is null)
            {
                CountHigh(x, b, end - start, histogram);
            }
            else
            {
                CountLow(x, b, end - start, highBins[t], histogram);
            }
        }

        int cores = Environment.ProcessorCount;
        int active = histograms.Count(h => h is not null);
        if (active >= cores && length * active >= FloatKernels.MinParallelElements)
        {
            Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = cores }, t =>
            {
                if (histograms[t] is { } h)
                {
                    One(t, 0, length, h);
                }
            });
            return;
        }

        int pieces = FloatKernels.Pieces(length);
        for (int t = 0; t < n; t++)
        {
            if (histograms[t] is not { } histogram)
            {
                continue;
            }

            if (pieces <= 1)
            {
                One(t, 0, length, histogram);
                continue;
            }

            var partial = new long[pieces][];
            try
            {
                FloatKernels.ForRanges(length, pieces, (piece, start, end) =>
                {
                    var h = ArrayPool<long>.Shared.Rent(Bins);
                    Array.Clear(h, 0, Bins);
                    partial[piece] = h;
                    One(t, start, end, h);
                });
                foreach (var h in partial)
                {
                    if (h is null)
                    {
                        continue;
                    }

                    for (int bin = 0; bin < Bins; bin++)
                    {
                        histogram[bin] += h[bin];
                    }
                }
            }
            finally
            {
                foreach (var h in partial)
                {
                    if (h is not null)
                    {
                        ArrayPool<long>.Shared.Return(h);
                    }
                }
            }
        }
    }

    /// <summary>
    /// histogram[|τ| bits &gt;&gt; 16]++ for the <paramref name="n"/> entries τ = x − b (τ = x when
    /// <paramref name="b"/> is null).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void CountHigh(float* x, float* b, long n, long[] histogram)
    {
        fixed (long* h = histogram)
        {
            long i = 0;
            if (b is null)
            {
                var bits = (uint*)x;
                for (; i + 4 <= n; i += 4)
                {
                    uint p = bits[i], q = bits[i + 1], r = bits[i + 2], s = bits[i + 3];
                    h[(p & MagnitudeMask) >> 16]++;
                    h[(q & MagnitudeMask) >> 16]++;
                    h[(r & MagnitudeMask) >> 16]++;
                    h[(s & MagnitudeMask) >> 16]++;
                }
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                var mask = Vector256.Create(MagnitudeMask);
                var bins = stackalloc uint[8];
                for (; i + 8 <= n; i += 8)
                {
                    (((Vector256.Load(x + i) - Vector256.Load(b + i)).AsUInt32() & mask) >> 16).Store(bins);
                    h[bins[0]]++;
                    h[bins[1]]++;
                    h[bins[2]]++;
                    h[bins[3]]++;
                    h[bins[4]]++;
                    h[bins[5]]++;
                    h[bins[6]]++;
                    h[bins[7]]++;
                }
            }

            for (; i < n; i++)
            {
                h[(Bits(x, b, i) & MagnitudeMask) >> 16]++;
            }
        }
    }

    /// <summary>histogram[|τ| bits &amp; 0xFFFF]++ for the entries τ = x − b whose |τ| bits &gt;&gt; 16 equal <paramref name="highBin"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void CountLow(float* x, float* b, long n, int highBin, long[] histogram)
    {
        const uint highMask = MagnitudeMask & 0xFFFF_0000;
        uint target = (uint)highBin << 16;
        fixed (long* h = histogram)
        {
            long i = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                var mask = Vector256.Create(highMask);
                var wanted = Vector256.Create(target);
                for (; i + 8 <= n; i += 8)
                {
                    var v = b is null ? Vector256.Load(x + i) : Vector256.Load(x + i) - Vector256.Load(b + i);
                    if (!Vector256.EqualsAny(v.AsUInt32() & mask, wanted))
                    {
                        continue;
                    }

                    for (long j = i; j < i + 8; j++)
                    {
                        uint bits = Bits(x, b, j);
                        if ((bits & highMask) == target)
                        {
                            h[bits & 0xFFFF]++;
                        }
                    }
                }
            }

            for (; i < n; i++)
            {
                uint bits = Bits(x, b, i);
                if ((bits & highMask) == target)
                {
                    h[bits & 0xFFFF]++;
                }
            }
        }
    }

    /// <summary>The bit pattern of τ[i] = x[i] − b[i] (x[i] when b is null).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Bits(float* x, float* b, long i) =>
        b is null ? ((uint*)x)[i] : BitConverter.SingleToUInt32Bits(x[i] - b[i]);
}
