using System.Runtime.InteropServices;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// Exact "count-th largest magnitude" over a stream of tensors, without concatenating them: a
/// two-level histogram over the IEEE-754 bit pattern of |x|. For non-negative floats the uint32
/// bit pattern is monotonic in the value, so pass 1 counts the top 16 bits into 65,536 bins and
/// finds the bin that holds the count-th largest entry, and pass 2 counts the low 16 bits of the
/// entries inside that bin. The two bins give the exact threshold bits. Memory is two fixed
/// histograms plus one chunk of a tensor, independent of the model size.
/// </summary>
internal static class MagnitudeThreshold
{
    /// <summary>Bins per level (16 bits).</summary>
    internal const int Bins = 1 << 16;

    /// <summary>Elements processed at once; bounds the temporary memory per tensor.</summary>
    internal const long ChunkElements = 1 << 20;

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
        var flat = values.reshape(-1);
        long n = flat.shape[0];
        for (long start = 0; start < n; start += ChunkElements)
        {
            using var chunkScope = torch.NewDisposeScope();
            var bits = MagnitudeBits(flat.narrow(0, start, Math.Min(ChunkElements, n - start)));
            AddCounts(bits.floor_divide(Bins).bincount(null!, Bins), histogram);
        }
    }

    /// <summary>
    /// Adds the histogram of the low 16 bits of |x| to <paramref name="histogram"/>, counting only
    /// the entries whose top 16 bits equal <paramref name="highBin"/>.
    /// </summary>
    public static void AccumulateLow(torch.Tensor values, int highBin, long[] histogram)
    {
        using var scope = torch.NewDisposeScope();
        var flat = values.reshape(-1);
        long n = flat.shape[0];
        for (long start = 0; start < n; start += ChunkElements)
        {
            using var chunkScope = torch.NewDisposeScope();
            var bits = MagnitudeBits(flat.narrow(0, start, Math.Min(ChunkElements, n - start)));
            var inBin = bits.masked_select(bits.floor_divide(Bins).eq(highBin));
            if (inBin.numel() == 0)
            {
                continue;
            }

            AddCounts(inBin.remainder(Bins).bincount(null!, Bins), histogram);
        }
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

    private static torch.Tensor MagnitudeBits(torch.Tensor chunk)
    {
        var magnitude = chunk.abs().to(torch.ScalarType.Float32).contiguous();
        var bits = torch.empty(magnitude.shape, torch.ScalarType.Int32);
        magnitude.bytes.CopyTo(bits.bytes);
        return bits;
    }

    private static void AddCounts(torch.Tensor counts, long[] histogram)
    {
        var values = MemoryMarshal.Cast<byte, long>(counts.contiguous().bytes);
        for (int i = 0; i < values.Length; i++)
        {
            histogram[i] += values[i];
        }
    }
}
