using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Microsoft.ML.TaskVectors.Runtime;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// Exact "count-th largest magnitude" of each task's τ over a stream of tensors, without holding or
/// sorting them. For non-negative floats the uint32 bit pattern is monotonic in the value, so the
/// search runs over |τ|'s bit patterns (τ's bits with the sign cleared, which orders NaN above ∞ as
/// torch.abs followed by a sort would) in windows [Low, High): a pass counts the entries at or above
/// High, and the entries inside the window are either histogrammed (65,536 bins) or collected.
/// Either pins the answer down exactly or gives a narrower window for another pass.
/// </summary>
/// <remarks>
/// <para>
/// Without a guess the first window is every bit pattern, histogrammed at 2^15 patterns per bin, and
/// the second pass counts inside the one bin that holds the answer: two passes. A sample of about
/// 1/64 of the entries (blocks at seeded positions) gives a guess instead: a window that holds the
/// answer with overwhelming probability and a few percent of the entries at most, which one pass
/// collects and a radix select settles in memory. A guess that misses costs passes, never
/// exactness: the counts show which side the answer is on, and the search goes on from there.
/// </para>
/// <para>
/// The passes run as C# kernels over the tensors' float32 memory (τ = θ − θ0 formed in registers
/// with the same float32 subtraction torch does), vectorised, on every core: each worker counts
/// its own chunks into tallies of its own, added up at the end of the pass.
/// </para>
/// </remarks>
internal static unsafe class MagnitudeThreshold
{
    /// <summary>Histogram bins of a window (16 bits).</summary>
    internal const int BinBits = 16;

    /// <summary>Tensors up to this many entries are ranked in memory (a radix select over their magnitude bits) rather than by passes.</summary>
    internal const int InMemoryLimit = 1 << 16;

    /// <summary>Fewest entries for which a sample is taken first (a few blocks); below this the two histogram passes are cheap enough.</summary>
    internal const long SampledFrom = 1 << 18;

    /// <summary>Clears the sign bit: |x|'s bit pattern from x's.</summary>
    internal const uint MagnitudeMask = 0x7FFF_FFFF;

    /// <summary>One past the largest magnitude bit pattern.</summary>
    private const uint End = 0x8000_0000;

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

    /// <summary>The count-th largest magnitude of one in-memory tensor, or null when count is 0.</summary>
    public static float? Find(torch.Tensor values, long count)
    {
        using var scope = torch.NewDisposeScope();
        return Find(new TaskTensorBatch([values]), [count])[0];
    }

    /// <summary>
    /// The exact magnitude of the <paramref name="count"/>-th largest |x| over the tensors produced
    /// by <paramref name="readPass"/> (called once per pass, twice in all), or null when count is 0.
    /// </summary>
    public static float? Find(long count, Action<Action<torch.Tensor>> readPass) =>
        Select([new Group(0, [count], null, visit => readPass(tensor =>
        {
            using var scope = torch.NewDisposeScope();
            visit(0, new TaskTensorBatch([tensor]));
        }))], workers: 1)[0][0];

    /// <summary>
    /// The exact <paramref name="counts"/>[t]-th largest |τt| of each task's tensor in the batch
    /// (null where the count is 0). Small tensors select among their |τ| bit patterns in memory (the
    /// order the passes use, so the result is the same); large ones are sampled first and then take one pass.
    /// </summary>
    public static float?[] Find(TaskBatch batch, IReadOnlyList<long> counts)
    {
        int n = batch.Count;
        if (counts.Count != n || counts.Any(c => c < 0 || c > batch.Length))
        {
            throw new ArgumentException($"One count per task is needed, none above the {batch.Length} entries.", nameof(counts));
        }

        if (batch.Length <= InMemoryLimit)
        {
            var thresholds = new float?[n];
            var bits = ArrayPool<uint>.Shared.Rent((int)batch.Length);
            try
            {
                for (int t = 0; t < n; t++)
                {
                    if (counts[t] > 0)
                    {
                        fixed (uint* span = bits)
                        {
                            Copy(batch.Pointer(t), batch.BasePointer, new Span<uint>(span, (int)batch.Length));
                            thresholds[t] = BitConverter.UInt32BitsToSingle(SelectLargest([((IntPtr)span, (int)batch.Length)], span, counts[t]));
                        }
                    }
                }
            }
            finally
            {
                ArrayPool<uint>.Shared.Return(bits);
            }

            return thresholds;
        }

        Window[]? guesses = null;
        if (batch.Length >= SampledFrom)
        {
            var blocks = MagnitudeSample.Blocks(0, batch.Length, MagnitudeSample.InMemoryBlock, MagnitudeSample.InMemoryStride).ToArray();
            using var sample = new MagnitudeSample(n, blocks.Select(b => b.Length).ToArray());
            foreach (var (start, length) in blocks)
            {
                sample.Add(batch.Slice(start, length));
            }

            guesses = sample.Guess(counts, batch.Length, MagnitudeSample.NarrowMargin); // a miss costs one pass over memory
        }

        return Select([new Group(batch.Length, counts, guesses, InMemory(batch))], Environment.ProcessorCount)[0];
    }

    /// <summary>A pass over an in-memory batch: its entries split over the cores (or into <paramref name="pieces"/>).</summary>
    private static Action<Action<int, TaskBatch>> InMemory(TaskBatch batch, int? pieces = null) => visit =>
        FloatKernels.ForRanges(batch.Length, pieces ?? FloatKernels.Pieces(batch.Length), (piece, start, end) => visit(piece, batch.Slice(start, end - start)));

    /// <summary>
    /// The search over an in-memory batch from the given first windows (collected), whether or not they
    /// hold the answers, its passes split into <paramref name="workers"/> pieces (default: the cores).
    /// </summary>
    internal static float?[] Find(TaskBatch batch, IReadOnlyList<long> counts, Window[] firstWindows, int? workers = null) =>
        Select([new Group(batch.Length, counts, firstWindows, InMemory(batch, workers))], workers ?? Environment.ProcessorCount)[0];

    /// <summary>
    /// The exact <paramref name="counts"/>[t]-th largest |τt| over every tensor of
    /// <paramref name="source"/> (null where the count is 0): a sample of about 1/64 of the entries
    /// read as blocks, then usually one pass over the source. Reports progress over the passes and
    /// honours cancellation between tensors.
    /// </summary>
    public static float?[] Find(ITaskBatchSource source, IReadOnlyList<long> counts, IProgress<double>? progress, CancellationToken cancellationToken)
    {
        int n = source.Count;
        var names = source.TensorNames;
        var lengths = names.Select(source.Entries).ToArray();
        long total = lengths.Sum();
        if (counts.Count != n || counts.Any(c => c < 0 || c > total))
        {
            throw new ArgumentException($"One count per task is needed, none above the {total} entries.", nameof(counts));
        }

        // Progress counts the sample as a pass (a cheap one over files, a whole read over tensors), assumes
        // the passes a good guess needs (one, or two without a guess) and never goes back.
        bool sampled = total >= SampledFrom && counts.Any(c => c > 0);
        int passes = 0, expected = 2;
        double reported = 0;
        void Report(double tensorsDone)
        {
            double fraction = (passes + tensorsDone / names.Count) / Math.Max(expected, passes + 1);
            if (fraction > reported)
            {
                progress?.Report(reported = fraction);
            }
        }

        progress?.Report(0.0);
        Window[]? guesses = null;
        if (sampled)
        {
            guesses = Sample(source, names, lengths, counts, MagnitudeSample.WideMargin, Report, cancellationToken);
            passes++;
        }

        var thresholds = Select([new Group(total, counts, guesses, visit =>
        {
            for (int i = 0; i < names.Count; i++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                source.ReadChunks(names[i], (worker, _, chunk) => visit(worker, chunk));
                Report(i + 1.0);
            }

            passes++;
        })], source.Workers)[0];
        progress?.Report(1.0);
        return thresholds;
    }

    /// <summary>
    /// Guessed windows for <paramref name="names"/> taken as one stream, from blocks of
    /// <see cref="MagnitudeSample.StreamBlock"/> entries at one per <see cref="MagnitudeSample.StreamStride"/>
    /// (positions over the stream, read per tensor); null when the sample is too small to guess from.
    /// </summary>
    private static Window[]? Sample(ITaskBatchSource source, IReadOnlyList<string> names, IReadOnlyList<long> lengths, IReadOnlyList<long> counts,
        double margin, Action<double>? tensorsDone, CancellationToken cancellationToken)
    {
        var blocks = new (long Start, long Length)[names.Count][];
        long offset = 0;
        for (int i = 0; i < names.Count; i++)
        {
            long first = offset;
            blocks[i] = MagnitudeSample.Blocks(offset, lengths[i], MagnitudeSample.StreamBlock, MagnitudeSample.StreamStride)
                .Select(b => (b.Start - first, b.Length)).ToArray();
            offset += lengths[i];
        }

        // The workers sample whole tensors side by side, each block into the sample at its index.
        using var sample = new MagnitudeSample(source.Count, blocks.SelectMany(b => b.Select(r => r.Length)).ToArray(), workers: source.Workers);
        var firstBlock = new int[names.Count];
        for (int i = 1; i < names.Count; i++)
        {
            firstBlock[i] = firstBlock[i - 1] + blocks[i - 1].Length;
        }

        int done = 0;
        FloatKernels.RunWorkers(names.Count, source.Workers, (worker, i) =>
        {
            cancellationToken.ThrowIfCancellationRequested();
            int block = firstBlock[i];
            if (blocks[i].Length > 0)
            {
                source.ReadRanges(worker, names[i], blocks[i], (_, batch) => sample.Add(worker, block++, batch));
            }

            lock (sample)
            {
                tensorsDone?.Invoke(++done);
            }
        });

        return sample.Guess(counts, offset, margin);
    }

    /// <summary>
    /// The exact count(d)-th largest |τt| of every tensor of <paramref name="source"/> on its own
    /// (d its entries; null where the count is 0), by tensor name. A tensor of one chunk is ranked in
    /// memory. Larger ones are each sampled (1/64 of their entries) and then searched together: a
    /// pass reads every tensor that still has a search open, usually once.
    /// </summary>
    public static Dictionary<string, float?[]> FindPerTensor(ITaskBatchSource source, Func<long, long> count, IProgress<double>? progress, CancellationToken cancellationToken)
    {
        var thresholds = new Dictionary<string, float?[]>(StringComparer.Ordinal);
        var groups = new List<(string Name, Group Group)>();
        var names = source.TensorNames;

        // Progress: the samples (and tensors ranked in memory) fill the first half, the tensors' reads
        // in the shared passes the second, assuming one pass; it never goes back.
        double reported = 0;
        int read = 0;
        void Report(double fraction)
        {
            if (fraction > reported)
            {
                progress?.Report(reported = fraction);
            }
        }

        progress?.Report(0.0);
        for (int i = 0; i < names.Count; i++)
        {
            Report(0.5 * i / names.Count);
            cancellationToken.ThrowIfCancellationRequested();
            var name = names[i];
            long length = source.Entries(name);
            var counts = Enumerable.Repeat(count(length), source.Count).ToArray();
            if (length <= TaskBatchKernel.ChunkEntries)
            {
                source.ReadChunks(name, (_, _, chunk) => thresholds[name] = Find(chunk, counts));
                continue;
            }

            var guesses = length >= SampledFrom && counts[0] > 0
                ? Sample(source, [name], [length], counts, MagnitudeSample.NarrowMargin, null, cancellationToken)
                : null;
            groups.Add((name, new Group(length, counts, guesses, visit =>
            {
                cancellationToken.ThrowIfCancellationRequested();
                source.ReadChunks(name, (worker, _, chunk) => visit(worker, chunk));
                Report(Math.Min(1.0, 0.5 + 0.5 * ++read / groups.Count));
            })));
        }

        Report(0.5);
        var found = Select(groups.Select(g => g.Group).ToArray(), source.Workers);
        for (int g = 0; g < groups.Count; g++)
        {
            thresholds[groups[g].Name] = found[g];
        }

        progress?.Report(1.0);
        return thresholds;
    }

    /// <summary>
    /// One stream searched for each task's count-th largest |τ|: its entries, the rank sought per
    /// task (0: none), first windows (null: every magnitude) and a pass over it, which calls the
    /// visitor with each chunk and the index of the worker thread holding it (one chunk at a time per worker).
    /// </summary>
    private sealed record Group(long Total, IReadOnlyList<long> Counts, Window[]? Guesses, Action<Action<int, TaskBatch>> Read);

    /// <summary>
    /// The search: passes over the groups until every task's count-th largest |τ| in each is known
    /// exactly. A pass reads each group that still has a search open and settles that group before
    /// reading the next, so only one group's tallies exist at a time. A group's first pass over
    /// guessed windows collects the entries inside them (per task up to 1M entries or 1/(2N) of the
    /// group's, at most half a float32 copy of it in all); a collection that overflows turns into a
    /// histogram of its window, which still narrows the window to one bin. Later passes histogram.
    /// </summary>
    /// <param name="groups">The streams.</param>
    /// <param name="workers">Threads a pass calls its visitor from.</param>
    private static float?[][] Select(IReadOnlyList<Group> groups, int workers)
    {
        var results = groups.Select(g => new float?[g.Counts.Count]).ToArray();
        var windows = groups.Select(g => g.Counts.Select((c, t) => c > 0 ? g.Guesses?[t] ?? Window.All : (Window?)null).ToArray()).ToArray();
        var collect = groups.Select(g => g.Guesses is not null).ToArray();
        while (windows.Any(w => w.Any(x => x is not null)))
        {
            for (int g = 0; g < groups.Count; g++)
            {
                if (windows[g].All(w => w is null))
                {
                    continue;
                }

                var group = groups[g];
                long cap = Math.Max(1L << 20, group.Total / (2L * group.Counts.Count));
                using var pass = new Pass(windows[g], collect[g], cap, hugePages: cap > 1L << 20, workers);
                group.Read(pass.Add);
                pass.Finish();
                Settle(pass.Tallies, group.Counts, windows[g], results[g]);
                collect[g] = false;
            }
        }

        return results;
    }

    /// <summary>Each tally's answer, or the window of the next pass (see <see cref="Select"/>); the tasks' collections are selected from side by side.</summary>
    private static void Settle(Tally?[] tallies, IReadOnlyList<long> counts, Window?[] windows, float?[] result)
    {
        Parallel.For(0, tallies.Length, t =>
        {
            if (tallies[t] is not { } tally)
            {
                return;
            }

            var w = tally.Window;
            long need = counts[t] - tally.Above;
            if (need <= 0)
            {
                windows[t] = Window.Between(w.High, End); // the answer is above the window
            }
            else if (need > tally.Inside)
            {
                windows[t] = Window.Between(0, w.Low); // below it
            }
            else if (tally.Collected is not null)
            {
                result[t] = BitConverter.UInt32BitsToSingle(SelectCollected(tally, need));
                windows[t] = null;
            }
            else
            {
                // Histogrammed (a collection that overflowed went into the histogram).
                var (bin, _) = Walk(tally.Histogram!.AsSpan(0, w.Bins), need); // pooled: longer than the window
                uint low = w.Low + ((uint)bin << w.Shift);
                if (w.Shift == 0)
                {
                    result[t] = BitConverter.UInt32BitsToSingle(low);
                    windows[t] = null;
                }
                else
                {
                    windows[t] = Window.Between(low, Math.Min(w.High, low + (1u << w.Shift)));
                }
            }
        });
    }

    /// <summary>
    /// The need-th largest of a tally's collected bit patterns (its own and those it adopted), in the
    /// tally's own buffer, which has room for them all (see <see cref="Tally.Add"/>).
    /// </summary>
    private static uint SelectCollected(Tally tally, long need) =>
        SelectLargest(tally.Adopted.Prepend(((IntPtr)tally.Collected, tally.CollectedCount)).ToArray(), tally.Collected, need);

    /// <summary>
    /// The need-th largest of the bit patterns in <paramref name="parts"/> (need ≥ 1): a radix select over 11,
    /// 10 and 10 bits, each round keeping only the entries of the bin that holds the answer. The first round
    /// gathers them from every part into <paramref name="bits"/> (the first part, with room for them all),
    /// its reads staying ahead of its writes; the parts are overwritten.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static uint SelectLargest((IntPtr Bits, int Count)[] parts, uint* bits, long need)
    {
        uint prefix = 0;
        Span<long> histogram = stackalloc long[1 << 11];
        foreach (var (shift, width) in new[] { (20, 11), (10, 10), (0, 10) })
        {
            uint mask = (1u << width) - 1;
            var h = histogram[..(1 << width)];
            h.Clear();
            foreach (var (part, count) in parts)
            {
                var x = (uint*)part;
                for (long i = 0; i < count; i++)
                {
                    h[(int)((x[i] >> shift) & mask)]++;
                }
            }

            (int bin, need) = Walk(h, need);
            prefix |= (uint)bin << shift;
            int kept = 0;
            foreach (var (part, count) in parts)
            {
                var x = (uint*)part;
                for (long i = 0; i < count; i++)
                {
                    if (((x[i] >> shift) & mask) == (uint)bin)
                    {
                        bits[kept++] = x[i];
                    }
                }
            }

            parts = [((IntPtr)bits, kept)];
        }

        return prefix;
    }

    /// <summary>|τ| bit patterns of <paramref name="destination"/>.Length entries (τ = x − b, or x when b is null).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Copy(float* x, float* b, Span<uint> destination)
    {
        for (int i = 0; i < destination.Length; i++)
        {
            destination[i] = Bits(x, b, i) & MagnitudeMask;
        }
    }

    /// <summary>
    /// Walks <paramref name="histogram"/> from the largest bin down and returns the bin holding the
    /// <paramref name="rank"/>-th largest entry (1-based) and that entry's rank inside the bin.
    /// </summary>
    internal static (int Bin, long RankInBin) Walk(ReadOnlySpan<long> histogram, long rank)
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

    /// <summary>
    /// A range [Low, High) of magnitude bit patterns, histogrammed at 2^Shift patterns per bin so
    /// that it fits in 2^<see cref="BinBits"/> bins.
    /// </summary>
    internal readonly record struct Window(uint Low, uint High)
    {
        /// <summary>Every magnitude.</summary>
        public static Window All => new(0, End);

        /// <summary>The window [low, high), which must not be empty.</summary>
        public static Window Between(uint low, uint high) =>
            high > low ? new(low, high) : throw new InvalidOperationException("The task vectors changed between the passes of the magnitude search.");

        /// <summary>Bit patterns per histogram bin, as a power of two.</summary>
        public int Shift => Math.Max(0, BitOperations.Log2(High - Low - 1) + 1 - BinBits);

        /// <summary>Histogram bins the window needs.</summary>
        public int Bins => (int)((High - Low - 1) >> Shift) + 1;
    }

    /// <summary>One task's counts in one pass over its window.</summary>
    /// <remarks>
    /// A collection is allocated at its cap (up to 64 MB) at once: only the pages it fills cost memory
    /// (fresh pages are what costs time), where growing it step by step would copy it into fresh blocks
    /// again and again. Beyond 64 MB it doubles as it fills. When the stream is large enough for its
    /// collections to fill many MB they are mapped in huge pages (<see cref="HugePageMemory"/>); smaller
    /// ones come from the C heap, which reuses the pages earlier searches touched. The workers'
    /// collections are not copied together either: the first worker's tally adopts the others', and
    /// the select reads them all.
    /// </remarks>
    private sealed class Tally : IDisposable
    {
        /// <summary>Collections stop (and the window is histogrammed instead) beyond this many entries.</summary>
        private readonly int _cap;
        private readonly List<(IntPtr Bits, int Count)> _adopted = [];
        private readonly bool _hugePages;
        private int _capacity;

        public Tally(Window window, bool collect, long cap, bool hugePages)
        {
            Window = window;
            _hugePages = hugePages;
            _cap = (int)Math.Min(cap, Array.MaxLength);
            if (collect)
            {
                _capacity = Math.Min(_cap, 1 << 24);
                Collected = (uint*)Allocate((long)_capacity * sizeof(uint));
            }
            else
            {
                StartHistogram();
            }
        }

        public Window Window { get; }

        public long Above { get; set; }

        public long Inside { get; set; }

        /// <summary>The window's histogram when not collecting: from the start, or since a collection overflowed.</summary>
        public long[]? Histogram { get; private set; }

        /// <summary>The bit patterns inside the window while collecting (null otherwise).</summary>
        public uint* Collected { get; private set; }

        public int CollectedCount { get; private set; }

        /// <summary>Other workers' collections this tally took over (see <see cref="Add"/>).</summary>
        public IReadOnlyList<(IntPtr Bits, int Count)> Adopted => _adopted;

        /// <summary>Collected entries, adopted ones included.</summary>
        public long TotalCollected => CollectedCount + _adopted.Sum(a => (long)a.Count);

        /// <summary>Adds an entry inside the window: collected, or counted once the collection has overflowed.</summary>
        public void Collect(uint bits)
        {
            if (Collected is null)
            {
                Histogram![(bits - Window.Low) >> Window.Shift]++;
                return;
            }

            if (CollectedCount == _capacity)
            {
                if (_capacity == _cap)
                {
                    Overflow();
                    Collect(bits);
                    return;
                }

                int grown = (int)Math.Min(_cap, 2L * _capacity);
                Collected = (uint*)Reallocate(Collected, (long)CollectedCount * sizeof(uint), (long)grown * sizeof(uint));
                _capacity = grown;
            }

            Collected[CollectedCount++] = bits;
        }

        /// <summary>
        /// Adds another worker's tally of the same window (one that adopted nothing), taking over its
        /// collection; this tally's buffer grows to hold them all if needed.
        /// </summary>
        public void Add(Tally other)
        {
            Above += other.Above;
            Inside += other.Inside;
            long total = TotalCollected + other.CollectedCount;
            if (Collected is not null && other.Collected is not null && total <= _cap)
            {
                if (total > _capacity)
                {
                    Collected = (uint*)Reallocate(Collected, (long)CollectedCount * sizeof(uint), total * sizeof(uint));
                    _capacity = (int)total;
                }

                _adopted.Add(((IntPtr)other.Collected, other.CollectedCount));
                other.Collected = null;
                other.CollectedCount = 0;
                return;
            }

            Overflow();
            if (other.Collected is not null)
            {
                for (int i = 0; i < other.CollectedCount; i++)
                {
                    Collect(other.Collected[i]);
                }
            }
            else
            {
                for (int bin = 0; bin < Window.Bins; bin++)
                {
                    Histogram![bin] += other.Histogram![bin];
                }
            }
        }

        /// <summary>Ends the collection (if any): what it held goes into a histogram of the window.</summary>
        private void Overflow()
        {
            if (Collected is null)
            {
                return;
            }

            var collected = Collected;
            Collected = null;
            StartHistogram();
            foreach (var (part, count) in _adopted.Prepend(((IntPtr)collected, CollectedCount)))
            {
                for (int i = 0; i < count; i++)
                {
                    Collect(((uint*)part)[i]);
                }

                Free((void*)part);
            }

            _adopted.Clear();
            CollectedCount = 0;
        }

        private void* Allocate(long bytes) => _hugePages ? HugePageMemory.Allocate(bytes) : NativeMemory.Alloc((nuint)bytes);

        private void* Reallocate(void* memory, long kept, long bytes) =>
            _hugePages ? HugePageMemory.Reallocate(memory, kept, bytes) : NativeMemory.Realloc(memory, (nuint)bytes);

        private void Free(void* memory)
        {
            if (_hugePages)
            {
                HugePageMemory.Free(memory);
            }
            else
            {
                NativeMemory.Free(memory);
            }
        }

        private void StartHistogram()
        {
            Histogram = ArrayPool<long>.Shared.Rent(Window.Bins);
            Array.Clear(Histogram, 0, Window.Bins);
        }

        public void Dispose()
        {
            if (Histogram is not null)
            {
                ArrayPool<long>.Shared.Return(Histogram);
                Histogram = null;
            }

            Free(Collected);
            Collected = null;
            foreach (var (part, _) in _adopted)
            {
                Free((void*)part);
            }

            _adopted.Clear();
        }
    }

    /// <summary>
    /// One pass: a tally per task still searching and per worker, fed chunk by chunk, that
    /// <see cref="Finish"/> adds up.
    /// </summary>
    private sealed class Pass : IDisposable
    {
        private readonly Tally?[][] _pieces; // [task][worker]
        private readonly Window?[] _windows;
        private readonly bool _collect;
        private readonly long _cap;
        private readonly bool _hugePages;

        public Pass(Window?[] windows, bool collect, long cap, bool hugePages, int workers)
        {
            _windows = windows;
            _collect = collect;
            _cap = cap;
            _hugePages = hugePages;
            _pieces = windows.Select(_ => new Tally?[workers]).ToArray();
            Tallies = new Tally?[windows.Length];
        }

        public Tally?[] Tallies { get; }

        /// <summary>Counts a chunk for every task still searching, on the calling thread, into <paramref name="worker"/>'s tallies.</summary>
        public void Add(int worker, TaskBatch chunk)
        {
            if (chunk.Count != _windows.Length)
            {
                throw new ArgumentException($"The batch has {chunk.Count} tasks; the search has {_windows.Length}.", nameof(chunk));
            }

            for (int t = 0; t < _windows.Length; t++)
            {
                if (_windows[t] is { } window)
                {
                    var tally = _pieces[t][worker] ??= new Tally(window, _collect, _cap, _hugePages);
                    Count(chunk.Pointer(t), chunk.BasePointer, chunk.Length, tally);
                }
            }
        }

        /// <summary>Adds the workers' tallies into <see cref="Tallies"/>.</summary>
        public void Finish()
        {
            for (int t = 0; t < _windows.Length; t++)
            {
                if (_windows[t] is not { } window)
                {
                    continue;
                }

                var tally = Tallies[t] = _pieces[t][0] ??= new Tally(window, _collect, _cap, _hugePages);
                foreach (var other in _pieces[t].Skip(1))
                {
                    if (other is not null)
                    {
                        tally.Add(other);
                    }
                }
            }
        }

        public void Dispose()
        {
            foreach (var tally in _pieces.SelectMany(p => p))
            {
                tally?.Dispose();
            }
        }
    }

    /// <summary>Counts the entries τ = x − b above the tally's window and hands those inside to it.</summary>
    private static void Count(float* x, float* b, long n, Tally tally)
    {
        long inside;
        if (tally.Collected is null)
        {
            fixed (long* h = tally.Histogram)
            {
                var sink = new ToHistogram(h, tally.Window.Low, tally.Window.Shift);
                tally.Above += Scan(x, b, n, tally.Window, ref sink, out inside);
            }
        }
        else
        {
            var sink = new ToTally(tally);
            tally.Above += Scan(x, b, n, tally.Window, ref sink, out inside);
        }

        tally.Inside += inside;
    }

    /// <summary>Where a scan puts the bit patterns inside its window.</summary>
    private interface IInside
    {
        void Add(uint bits);
    }

    private readonly struct ToHistogram(long* histogram, uint low, int shift) : IInside
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Add(uint bits) => histogram[(bits - low) >> shift]++;
    }

    private readonly struct ToTally(Tally tally) : IInside
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Add(uint bits) => tally.Collect(bits);
    }

    /// <summary>
    /// Over the <paramref name="n"/> entries τ = x − b (x when b is null): returns how many |τ| lie
    /// above the window, and passes those inside it to <paramref name="inside"/>. Whole vectors are
    /// compared at once; only vectors with an entry inside the window go lane by lane.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static long Scan<TInside>(float* x, float* b, long n, Window window, ref TInside inside, out long insideCount)
        where TInside : struct, IInside
    {
        long above = 0, within = 0, i = 0;
        int top = (int)(window.High - 1); // above the window: bits > top (as int: every magnitude is below 2^31)
        int low = (int)window.Low;
        var lanes = stackalloc uint[16];
        if (Vector512.IsHardwareAccelerated)
        {
            var mask = Vector512.Create((int)MagnitudeMask);
            var vTop = Vector512.Create(top);
            var vLow = Vector512.Create(low);
            for (; i + 16 <= n; i += 16)
            {
                var v = (b is null ? Vector512.Load(x + i) : Vector512.Load(x + i) - Vector512.Load(b + i)).AsInt32() & mask;
                var isAbove = Vector512.GreaterThan(v, vTop);
                above += BitOperations.PopCount(isAbove.ExtractMostSignificantBits());
                ulong m = Vector512.AndNot(Vector512.GreaterThanOrEqual(v, vLow), isAbove).ExtractMostSignificantBits();
                if (m != 0)
                {
                    v.AsUInt32().Store(lanes);
                    within += Lanes(m, lanes, ref inside);
                }
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var mask = Vector256.Create((int)MagnitudeMask);
            var vTop = Vector256.Create(top);
            var vLow = Vector256.Create(low);
            for (; i + 8 <= n; i += 8)
            {
                var v = (b is null ? Vector256.Load(x + i) : Vector256.Load(x + i) - Vector256.Load(b + i)).AsInt32() & mask;
                var isAbove = Vector256.GreaterThan(v, vTop);
                above += BitOperations.PopCount(isAbove.ExtractMostSignificantBits());
                uint m = Vector256.AndNot(Vector256.GreaterThanOrEqual(v, vLow), isAbove).ExtractMostSignificantBits();
                if (m != 0)
                {
                    v.AsUInt32().Store(lanes);
                    within += Lanes(m, lanes, ref inside);
                }
            }
        }

        for (; i < n; i++)
        {
            uint bits = Bits(x, b, i) & MagnitudeMask;
            if (bits >= window.High)
            {
                above++;
            }
            else if (bits >= window.Low)
            {
                within++;
                inside.Add(bits);
            }
        }

        insideCount = within;
        return above;
    }

    /// <summary>Hands the lanes set in <paramref name="mask"/> to <paramref name="inside"/>; returns how many there were.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Lanes<TInside>(ulong mask, uint* lanes, ref TInside inside)
        where TInside : struct, IInside
    {
        int count = BitOperations.PopCount(mask);
        for (; mask != 0; mask &= mask - 1)
        {
            inside.Add(lanes[BitOperations.TrailingZeroCount(mask)]);
        }

        return count;
    }

    /// <summary>The bit pattern of τ[i] = x[i] − b[i] (x[i] when b is null).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static uint Bits(float* x, float* b, long i) =>
        b is null ? ((uint*)x)[i] : BitConverter.SingleToUInt32Bits(x[i] - b[i]);
}
