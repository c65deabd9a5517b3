using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Microsoft.ML.TaskVectors.Merging;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Composition;

/// <summary>
/// The per-sample linear layer y_b = x_b·W_bᵀ, W_b = Σr mixing[b,r]·stack[r], and its backward, as fused CPU
/// kernels: each sample's weights are formed a small block at a time (rows × columns of W, for four samples
/// at once so every stack block is read once per four samples) straight into the buffer the matrix kernel
/// reads from, so per-sample weights never leave the L2 cache and no per-tile library call is paid. One register
/// kernel c[i][·] (+)= Σq a(i, q)·b[q][·], 6 × 64 with AVX-512 or 3 × 56 with AVX2, serves all three products
/// through its strides: forward runs along tokens (padded to whole kernel widths), backward along W's columns.
/// Threads (torch's thread count) split W's rows (forward) or columns (backward), and their shares of ∂mixing
/// are added in thread order, so with the same thread count a run repeats bit for bit.
/// </summary>
internal static unsafe class PerSampleKernels
{
    /// <summary>AVX-512: the 6 × 64 kernel; otherwise the 3 × 56 one.</summary>
    public static bool WideByDefault { get; } = Vector512.IsHardwareAccelerated && Avx512F.IsSupported;

    private static int RowsOf(bool wide) => wide ? 6 : 3;      // register rows of the matrix kernel
    private static int LanesOf(bool wide) => wide ? 64 : 56;   // its columns: 4 vectors of 16, or 7 of 8
    private const int BlockRows = 24;    // rows of W formed at once
    private const int BlockColumns = 384; // longest run of W's columns formed at once
    private const int Samples = 4;       // samples formed together
    private const long GroupBytes = 16L << 20; // per-sample operands kept in cache while the stack streams past them

    /// <summary>AVX2 with FMA on a CPU: the kernels run; otherwise callers use the library's batched products.</summary>
    public static bool IsSupported => Fma.IsSupported && Vector256.IsHardwareAccelerated;

    /// <summary>Tokens rounded up to whole kernel columns.</summary>
    private static long PaddedTokens(long tokens, bool wide) => RoundUp(tokens, LanesOf(wide));

    private static long RoundUp(long n, long multiple) => (n + multiple - 1) / multiple * multiple;

    /// <summary>
    /// Samples processed against one pass over the stack: as many as keep their operands (<paramref name="bytesPerSample"/>)
    /// within <see cref="GroupBytes"/>, in whole formation groups. Fewer passes re-read the stack less; larger groups
    /// would push the samples' own operands out of the cache at every block of W.
    /// </summary>
    private static long SampleGroup(long bytesPerSample, in Layer l) =>
        Math.Min(l.Batch, Math.Max(Samples, l.GroupBytes / Math.Max(1, bytesPerSample) / Samples * Samples));

    private static int ThreadCount() => Math.Clamp(get_num_threads(), 1, Environment.ProcessorCount);

    /// <summary>
    /// Column chunks of W: about equal, a multiple of the thread count in number, each a whole number of kernel
    /// widths and of 24 (backward's kernel runs along them in steps of <see cref="LanesOf"/>).
    /// </summary>
    private static (long Width, long Count) ColumnChunks(long inFeatures, bool wide, int threads)
    {
        long unit = wide ? 192 : 168; // lcm(24, lanes)
        long count = threads * Math.Max(1, (inFeatures + threads * BlockColumns - 1) / (threads * BlockColumns));
        long width = Math.Min(RoundUp((inFeatures + count - 1) / count, unit), RoundUp(inFeatures, unit));
        return (width, (inFeatures + width - 1) / width);
    }

    /// <summary>One layer's operands as raw float32 memory, and its geometry.</summary>
    private readonly struct Layer
    {
        public float* Stack { get; init; }       // [R, out·in]
        public float* Mixing { get; init; }      // [B, R]
        public float* XT { get; init; }          // forward: [B, in, tp]
        public float* YT { get; init; }          // forward: [B, outPadded, tp]
        public float* X { get; init; }           // backward: [B, T, xStride]
        public float* Gy { get; init; }          // backward: [B, tokenRows, outPadded]
        public float* GradX { get; init; }       // backward: [B, tokenRows, inPadded]
        public int R { get; init; }
        public long Batch { get; init; }
        public long Tokens { get; init; }
        public long Tp { get; init; }
        public long Out { get; init; }
        public long In { get; init; }
        public long OutPadded { get; init; }
        public long InPadded { get; init; }
        public long XStride { get; init; }
        public long TokenRows { get; init; }
        public long Width { get; init; }
        public bool Wide { get; init; }
        public long GroupBytes { get; init; }
        public long Numel => Out * In;
        public int Rows => RowsOf(Wide);
        public int Lanes => LanesOf(Wide);
    }

    /// <summary>x [B, T, in] (float32, CPU), mixing [B, R], stack [R, out·in] → y [B, T, out].</summary>
    /// <param name="x">Inputs [B, T, in].</param>
    /// <param name="mixing">Each sample's coefficients of the stacked weights [B, R].</param>
    /// <param name="stack">The R weights, each flattened out·in [R, out·in].</param>
    /// <param name="outFeatures">Output features of each weight.</param>
    /// <param name="inFeatures">Input features of each weight.</param>
    /// <param name="wide">The AVX-512 kernels (default: when the CPU has them).</param>
    /// <param name="groupBytes">Cache budget for the samples' operands per pass over the stack (default 16 MiB).</param>
    public static Tensor Forward(Tensor x, Tensor mixing, Tensor stack, long outFeatures, long inFeatures, bool? wide = null, long groupBytes = GroupBytes)
    {
        bool w = wide ?? WideByDefault;
        int threads = ThreadCount();
        long batch = x.shape[0], tokens = x.shape[1], tp = PaddedTokens(tokens, w);
        using var scope = NewDisposeScope();
        var xT = Workspace.Take(0, [batch, inFeatures, tp]);
        xT.narrow(2, 0, tokens).copy_(x.transpose(1, 2));
        xT.narrow(2, tokens, tp - tokens).zero_();
        var yT = Workspace.Take(1, [batch, RoundUp(outFeatures, RowsOf(w)), tp]);
        var m = mixing.detach().contiguous();
        var layer = new Layer
        {
            Stack = FloatKernels.Pointer(stack), Mixing = FloatKernels.Pointer(m), XT = FloatKernels.Pointer(xT), YT = FloatKernels.Pointer(yT),
            R = (int)stack.shape[0], Batch = batch, Tokens = tokens, Tp = tp, Out = outFeatures, In = inFeatures,
            OutPadded = yT.shape[1], Width = ColumnChunks(inFeatures, w, threads).Width, Wide = w, GroupBytes = groupBytes,
        };
        long blocks = (outFeatures + BlockRows - 1) / BlockRows;
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads },
            thread => ForwardRows(layer, blocks * thread / threads, blocks * (thread + 1) / threads));
        return yT.narrow(1, 0, outFeatures).narrow(2, 0, tokens).transpose(1, 2).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>yᵀ rows of the blocks [first, end) of 24 rows of W, for every sample.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardRows(in Layer l, long first, long end)
    {
        var buffers = Allocate(Samples * BlockRows * l.Width);
        long group = SampleGroup(l.In * l.Tp * sizeof(float), l);
        try
        {
            for (long g0 = 0; g0 < l.Batch; g0 += group)
            for (long block = first; block < end; block++)
            {
                long j0 = block * BlockRows;
                int rows = (int)Math.Min(BlockRows, l.Out - j0);
                for (long k0 = 0; k0 < l.In; k0 += l.Width)
                {
                    int kc = (int)Math.Min(l.Width, l.In - k0);
                    for (long b0 = g0; b0 < Math.Min(l.Batch, g0 + group); b0 += Samples)
                    {
                        int samples = (int)Math.Min(Samples, l.Batch - b0);
                        Form(l, j0, rows, k0, kc, b0, samples, buffers);
                        for (int s = 0; s < samples; s++)
                        {
                            float* w = buffers + s * BlockRows * l.Width;
                            float* xb = l.XT + ((b0 + s) * l.In + k0) * l.Tp;
                            float* yb = l.YT + ((b0 + s) * l.OutPadded + j0) * l.Tp;
                            for (int i = 0; i < rows; i += l.Rows)
                                for (long v = 0; v < l.Tp; v += l.Lanes)
                                    Kernel(l.Wide, w + i * l.Width, l.Width, 1, kc, xb + v, l.Tp, yb + i * l.Tp + v, l.Tp, accumulate: k0 > 0);
                        }
                    }
                }
            }
        }
        finally
        {
            NativeMemory.AlignedFree(buffers);
        }
    }

    /// <summary>
    /// ∂L/∂x [B, T, in] and ∂L/∂mixing [B, R] from gy [B, T, out]: ∂x_b = gy_b·W_b and
    /// ∂mixing[b,r] = ⟨gy_bᵀ·x_b, stack[r]⟩, the latter from register tiles of gy_bᵀ·x_b contracted with the
    /// stack while both are in cache. Both products read x, gy and ∂x in their own [B, T, ·] layout (tokens as
    /// kernel rows), so nothing is transposed; the copies only pad rows to whole kernel tiles.
    /// </summary>
    public static (Tensor GradX, Tensor GradMixing) Backward(Tensor x, Tensor mixing, Tensor stack, Tensor gradOutput, long outFeatures, long inFeatures,
        bool? wide = null, long groupBytes = GroupBytes)
    {
        bool w = wide ?? WideByDefault;
        int rowsOf = RowsOf(w), threads = ThreadCount();
        long batch = x.shape[0], tokens = x.shape[1];
        int r = (int)stack.shape[0];
        using var scope = NewDisposeScope();
        var (width, chunks) = ColumnChunks(inFeatures, w, threads);
        long tokenRows = RoundUp(tokens, rowsOf), outPadded = RoundUp(outFeatures, rowsOf), inPadded = chunks * width;
        var gy = Padded(gradOutput, tokenRows, outPadded, slot: 2);
        var xs = Padded(x, tokens, inPadded, slot: 3);
        bool padded = tokenRows != tokens || inPadded != inFeatures;
        // ∂x is accumulated into: zeroed; a workspace only when it is narrowed (copied) before it is returned.
        var gradX = padded ? Workspace.Take(4, [batch, tokenRows, inPadded]).zero_() : zeros(batch, tokenRows, inPadded);
        var m = mixing.detach().contiguous();
        var layer = new Layer
        {
            Stack = FloatKernels.Pointer(stack), Mixing = FloatKernels.Pointer(m), X = FloatKernels.Pointer(xs), Gy = FloatKernels.Pointer(gy),
            GradX = FloatKernels.Pointer(gradX), R = r, Batch = batch, Tokens = tokens, TokenRows = tokenRows, Out = outFeatures, In = inFeatures,
            OutPadded = outPadded, InPadded = inPadded, XStride = xs.shape[2], Width = width, Wide = w, GroupBytes = groupBytes,
        };
        var partials = new double[threads][];
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads },
            thread => partials[thread] = BackwardColumns(layer, chunks * thread / threads, chunks * (thread + 1) / threads));
        var gradMixing = new float[batch * r];
        for (int i = 0; i < gradMixing.Length; i++)
        {
            double total = 0;
            foreach (var partial in partials) total += partial[i];
            gradMixing[i] = (float)total;
        }
        if (padded) gradX = gradX.narrow(1, 0, tokens).narrow(2, 0, inFeatures).contiguous();
        return (gradX.MoveToOuterDisposeScope(), tensor(gradMixing, [batch, r]).MoveToOuterDisposeScope());
    }

    /// <summary>t [B, T, F] as a contiguous float32 [B, rows, columns] with zeros beyond (in a workspace); t itself when it already is one.</summary>
    private static Tensor Padded(Tensor t, long rows, long columns, int slot)
    {
        if (t.shape[1] == rows && t.shape[2] == columns && t.is_contiguous() && t.dtype == ScalarType.Float32) return t;
        var padded = Workspace.Take(slot, [t.shape[0], rows, columns]);
        padded.narrow(1, 0, t.shape[1]).narrow(2, 0, t.shape[2]).copy_(t);
        padded.narrow(1, t.shape[1], rows - t.shape[1]).zero_();
        padded.narrow(1, 0, t.shape[1]).narrow(2, t.shape[2], columns - t.shape[2]).zero_();
        return padded;
    }

    /// <summary>
    /// Reused float32 CPU buffers for the kernels' packed operands, one per slot and thread. Operands of a large
    /// batch exceed glibc's 32 MB limit for reusing freed memory, and fresh tensors would be mapped and page-faulted
    /// at every layer; these grow to the largest size asked for and stay (about 5 × 50 MB at batch 64 on ViT-B/32).
    /// </summary>
    private static class Workspace
    {
        [ThreadStatic] private static Tensor?[]? s_buffers;

        /// <summary>A contiguous [shape] view of slot's buffer; its contents are whatever the last use left.</summary>
        public static Tensor Take(int slot, long[] shape)
        {
            var buffers = s_buffers ??= new Tensor?[5];
            long numel = shape.Aggregate(1L, (a, b) => a * b);
            if (buffers[slot] is not { } buffer || buffer.numel() < numel)
            {
                buffers[slot]?.Dispose();
                buffer = empty(numel).DetachFromDisposeScope();
                buffers[slot] = buffer;
            }
            return buffer.narrow(0, 0, numel).view(shape);
        }
    }

    /// <summary>∂x columns of the column chunks [first, end) of W, and those chunks' share of ∂mixing [B·R] (returned).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double[] BackwardColumns(in Layer l, long first, long end)
    {
        var buffers = Allocate(Samples * BlockRows * l.Width);
        var tile = Allocate(l.Rows * l.Lanes);
        var sums = new double[l.Batch * l.R];
        long group = SampleGroup((l.Tokens * l.Width + l.TokenRows * l.Width + l.TokenRows * l.OutPadded) * sizeof(float), l);
        try
        {
            for (long chunk = first; chunk < end; chunk++)
            for (long g0 = 0; g0 < l.Batch; g0 += group)
            {
                long k0 = chunk * l.Width;
                int kc = (int)Math.Min(l.Width, l.In - k0);
                for (long j0 = 0; j0 < l.Out; j0 += BlockRows)
                {
                    int rows = (int)Math.Min(BlockRows, l.Out - j0);
                    for (long b0 = g0; b0 < Math.Min(l.Batch, g0 + group); b0 += Samples)
                    {
                        int samples = (int)Math.Min(Samples, l.Batch - b0);
                        Form(l, j0, rows, k0, kc, b0, samples, buffers);
                        for (int s = 0; s < samples; s++)
                        {
                            long b = b0 + s;
                            float* w = buffers + s * BlockRows * l.Width;
                            float* gyb = l.Gy + b * l.TokenRows * l.OutPadded + j0;
                            // ∂x_b[t][k] += Σj gy_b[t][j]·W_b[j][k] over this block's rows.
                            float* gxb = l.GradX + b * l.TokenRows * l.InPadded + k0;
                            for (long t = 0; t < l.TokenRows; t += l.Rows)
                                for (int c = 0; c < kc; c += l.Lanes)
                                    Kernel(l.Wide, gyb + t * l.OutPadded, l.OutPadded, 1, rows, w + c, l.Width, gxb + t * l.InPadded + c, l.InPadded, accumulate: true);
                            // (gy_bᵀ·x_b)[j][k] tiles, contracted with stack[·][j][k] at once.
                            float* xb = l.X + b * l.Tokens * l.XStride + k0;
                            var tileSums = sums.AsSpan((int)(b * l.R), l.R);
                            for (int i = 0; i < rows; i += l.Rows)
                                for (int c = 0; c < kc; c += l.Lanes)
                                {
                                    float* stackTile = l.Stack + (j0 + i) * l.In + k0 + c;
                                    if (l.Wide && i + l.Rows <= rows && c + l.Lanes <= kc)
                                        TileContract512(gyb + i, 1, l.OutPadded, (int)l.Tokens, xb + c, l.XStride, stackTile, l.In, l.Numel, tileSums);
                                    else
                                    {
                                        Kernel(l.Wide, gyb + i, 1, l.OutPadded, (int)l.Tokens, xb + c, l.XStride, tile, l.Lanes, accumulate: false);
                                        Contract(tile, l.Lanes, Math.Min(l.Rows, rows - i), Math.Min(l.Lanes, kc - c), stackTile, l.In, l.Numel, l.R, tileSums);
                                    }
                                }
                        }
                    }
                }
            }
            return sums;
        }
        finally
        {
            NativeMemory.AlignedFree(buffers);
            NativeMemory.AlignedFree(tile);
        }
    }

    /// <summary>Zeroed, aligned native memory (formed buffers then only ever hold finite values).</summary>
    private static float* Allocate(long floats)
    {
        var memory = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
        NativeMemory.Clear(memory, (nuint)(floats * sizeof(float)));
        return memory;
    }

    /// <summary>
    /// buffers[s][j][k] = Σr mixing[s][r]·stack[r][(j0 + j)·in + k0 + k] for j &lt; rows, k &lt; kc; rows up to
    /// the next multiple of 3 and columns up to the next multiple of 3 are zero (the kernel reads them).
    /// Three stack rows at a time update all samples, so each stack element is loaded once per four samples.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Form(in Layer l, long j0, int rows, long k0, int kc, long b0, int samples, float* buffers)
    {
        float* stack = l.Stack, mixing = l.Mixing + b0 * l.R;
        int r = l.R, width = (int)l.Width;
        long numel = l.Numel, inFeatures = l.In;
        int clearRows = (int)Math.Min(BlockRows, RoundUp(rows, l.Rows)), clearColumns = (int)Math.Min(width, RoundUp(kc, l.Lanes));
        for (int s = 0; s < samples; s++)
            for (int j = 0; j < clearRows; j++)
            {
                float* row = buffers + (s * BlockRows + j) * width;
                if (j >= rows) new Span<float>(row, clearColumns).Clear();
                else if (kc < clearColumns) new Span<float>(row + kc, clearColumns - kc).Clear();
            }
        float* m0 = mixing, m1 = mixing + (samples > 1 ? r : 0), m2 = mixing + (samples > 2 ? 2 * r : 0), m3 = mixing + (samples > 3 ? 3 * r : 0);
        bool wide = l.Wide;
        int vectorEnd = wide ? kc & ~15 : kc & ~7;
        for (int j = 0; j < rows; j++)
        {
            float* source = stack + (j0 + j) * inFeatures + k0;
            float* d0 = buffers + j * width, d1 = d0 + BlockRows * width, d2 = d1 + BlockRows * width, d3 = d2 + BlockRows * width;
            for (int q = 0; q < r; q += 3)
            {
                // A group of fewer than three stack rows repeats its first row with coefficient 0.
                int g = Math.Min(3, r - q);
                float* s0 = source + q * numel, s1 = g > 1 ? s0 + numel : s0, s2 = g > 2 ? s0 + 2 * numel : s0;
                float Coefficient(float* m, int u) => u < g ? m[q + u] : 0f;
                bool first = q == 0;
                if (wide)
                {
                    var a0 = Vector512.Create(m0[q]); var a1 = Vector512.Create(Coefficient(m0, 1)); var a2 = Vector512.Create(Coefficient(m0, 2));
                    var f0 = Vector512.Create(m1[q]); var f1 = Vector512.Create(Coefficient(m1, 1)); var f2 = Vector512.Create(Coefficient(m1, 2));
                    var c0 = Vector512.Create(m2[q]); var c1 = Vector512.Create(Coefficient(m2, 1)); var c2 = Vector512.Create(Coefficient(m2, 2));
                    var e0 = Vector512.Create(m3[q]); var e1 = Vector512.Create(Coefficient(m3, 1)); var e2 = Vector512.Create(Coefficient(m3, 2));
                    for (int k = 0; k < vectorEnd; k += 16)
                    {
                        var x0 = Vector512.Load(s0 + k); var x1 = Vector512.Load(s1 + k); var x2 = Vector512.Load(s2 + k);
                        var t0 = first ? Vector512<float>.Zero : Vector512.Load(d0 + k);
                        var t1 = first ? Vector512<float>.Zero : Vector512.Load(d1 + k);
                        var t2 = first ? Vector512<float>.Zero : Vector512.Load(d2 + k);
                        var t3 = first ? Vector512<float>.Zero : Vector512.Load(d3 + k);
                        Vector512.FusedMultiplyAdd(a2, x2, Vector512.FusedMultiplyAdd(a1, x1, Vector512.FusedMultiplyAdd(a0, x0, t0))).Store(d0 + k);
                        t1 = Vector512.FusedMultiplyAdd(f2, x2, Vector512.FusedMultiplyAdd(f1, x1, Vector512.FusedMultiplyAdd(f0, x0, t1)));
                        t2 = Vector512.FusedMultiplyAdd(c2, x2, Vector512.FusedMultiplyAdd(c1, x1, Vector512.FusedMultiplyAdd(c0, x0, t2)));
                        t3 = Vector512.FusedMultiplyAdd(e2, x2, Vector512.FusedMultiplyAdd(e1, x1, Vector512.FusedMultiplyAdd(e0, x0, t3)));
                        if (samples > 1) t1.Store(d1 + k);
                        if (samples > 2) t2.Store(d2 + k);
                        if (samples > 3) t3.Store(d3 + k);
                    }
                }
                else
                {
                    var a0 = Vector256.Create(m0[q]); var a1 = Vector256.Create(Coefficient(m0, 1)); var a2 = Vector256.Create(Coefficient(m0, 2));
                    var f0 = Vector256.Create(m1[q]); var f1 = Vector256.Create(Coefficient(m1, 1)); var f2 = Vector256.Create(Coefficient(m1, 2));
                    var c0 = Vector256.Create(m2[q]); var c1 = Vector256.Create(Coefficient(m2, 1)); var c2 = Vector256.Create(Coefficient(m2, 2));
                    var e0 = Vector256.Create(m3[q]); var e1 = Vector256.Create(Coefficient(m3, 1)); var e2 = Vector256.Create(Coefficient(m3, 2));
                    for (int k = 0; k < vectorEnd; k += 8)
                    {
                        var x0 = Vector256.Load(s0 + k); var x1 = Vector256.Load(s1 + k); var x2 = Vector256.Load(s2 + k);
                        var t0 = first ? Vector256<float>.Zero : Vector256.Load(d0 + k);
                        var t1 = first ? Vector256<float>.Zero : Vector256.Load(d1 + k);
                        var t2 = first ? Vector256<float>.Zero : Vector256.Load(d2 + k);
                        var t3 = first ? Vector256<float>.Zero : Vector256.Load(d3 + k);
                        Vector256.FusedMultiplyAdd(a2, x2, Vector256.FusedMultiplyAdd(a1, x1, Vector256.FusedMultiplyAdd(a0, x0, t0))).Store(d0 + k);
                        t1 = Vector256.FusedMultiplyAdd(f2, x2, Vector256.FusedMultiplyAdd(f1, x1, Vector256.FusedMultiplyAdd(f0, x0, t1)));
                        t2 = Vector256.FusedMultiplyAdd(c2, x2, Vector256.FusedMultiplyAdd(c1, x1, Vector256.FusedMultiplyAdd(c0, x0, t2)));
                        t3 = Vector256.FusedMultiplyAdd(e2, x2, Vector256.FusedMultiplyAdd(e1, x1, Vector256.FusedMultiplyAdd(e0, x0, t3)));
                        if (samples > 1) t1.Store(d1 + k);
                        if (samples > 2) t2.Store(d2 + k);
                        if (samples > 3) t3.Store(d3 + k);
                    }
                }
                for (int k = vectorEnd; k < kc; k++)
                    for (int s = 0; s < samples; s++)
                    {
                        float* d = d0 + s * BlockRows * width, ms = mixing + s * r + q;
                        float value = first ? 0f : d[k];
                        for (int u = 0; u < g; u++) value = MathF.FusedMultiplyAdd(ms[u], source[(q + u) * numel + k], value);
                        d[k] = value;
                    }
            }
        }
    }

    /// <summary>
    /// sums[r] += Σ tile[i][c]·stack[r][row i, column c] over i &lt; rows, c &lt; columns (W's rows are
    /// <paramref name="inFeatures"/> apart, the stack's <paramref name="numel"/>); each tile's sum is added in double.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Contract(float* tile, int tileStride, int rows, int columns, float* stack, long inFeatures, long numel, int r, Span<double> sums)
    {
        int vectorEnd = columns & ~7;
        for (int q = 0; q < r; q++)
        {
            var acc = Vector256<float>.Zero;
            float tail = 0;
            for (int i = 0; i < rows; i++)
            {
                float* t = tile + i * tileStride, s = stack + q * numel + i * inFeatures;
                for (int c = 0; c < vectorEnd; c += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(t + c), Vector256.Load(s + c), acc);
                for (int c = vectorEnd; c < columns; c++) tail = MathF.FusedMultiplyAdd(t[c], s[c], tail);
            }
            sums[q] += Vector256.Sum(acc) + tail;
        }
    }

    /// <summary>
    /// The full 6 × 64 tile of Σt gyᵀ[i][t]·x[t][·] (as <see cref="Kernel512"/> computes it), contracted with every
    /// stack row while still in registers: sums[r] += Σ tile[i][c]·stack[r][row i, column c].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TileContract512(float* a, long rowStride, long stepStride, int count, float* b, long bStride, float* stack, long inFeatures, long numel, Span<double> sums)
    {
        Vector512<float> c00 = Vector512<float>.Zero, c01 = Vector512<float>.Zero, c02 = Vector512<float>.Zero, c03 = Vector512<float>.Zero, c10 = Vector512<float>.Zero, c11 = Vector512<float>.Zero, c12 = Vector512<float>.Zero, c13 = Vector512<float>.Zero, c20 = Vector512<float>.Zero, c21 = Vector512<float>.Zero, c22 = Vector512<float>.Zero, c23 = Vector512<float>.Zero, c30 = Vector512<float>.Zero, c31 = Vector512<float>.Zero, c32 = Vector512<float>.Zero, c33 = Vector512<float>.Zero, c40 = Vector512<float>.Zero, c41 = Vector512<float>.Zero, c42 = Vector512<float>.Zero, c43 = Vector512<float>.Zero, c50 = Vector512<float>.Zero, c51 = Vector512<float>.Zero, c52 = Vector512<float>.Zero, c53 = Vector512<float>.Zero;
        for (int step = 0; step < count; step++)
        {
            float* bs = b + step * bStride, s = a + step * stepStride;
            var x0 = Vector512.Load(bs + 0); var x1 = Vector512.Load(bs + 16); var x2 = Vector512.Load(bs + 32); var x3 = Vector512.Load(bs + 48);
            var w0 = Vector512.Create(s[0 * rowStride]);
            c00 = Vector512.FusedMultiplyAdd(w0, x0, c00); c01 = Vector512.FusedMultiplyAdd(w0, x1, c01); c02 = Vector512.FusedMultiplyAdd(w0, x2, c02); c03 = Vector512.FusedMultiplyAdd(w0, x3, c03);
            var w1 = Vector512.Create(s[1 * rowStride]);
            c10 = Vector512.FusedMultiplyAdd(w1, x0, c10); c11 = Vector512.FusedMultiplyAdd(w1, x1, c11); c12 = Vector512.FusedMultiplyAdd(w1, x2, c12); c13 = Vector512.FusedMultiplyAdd(w1, x3, c13);
            var w2 = Vector512.Create(s[2 * rowStride]);
            c20 = Vector512.FusedMultiplyAdd(w2, x0, c20); c21 = Vector512.FusedMultiplyAdd(w2, x1, c21); c22 = Vector512.FusedMultiplyAdd(w2, x2, c22); c23 = Vector512.FusedMultiplyAdd(w2, x3, c23);
            var w3 = Vector512.Create(s[3 * rowStride]);
            c30 = Vector512.FusedMultiplyAdd(w3, x0, c30); c31 = Vector512.FusedMultiplyAdd(w3, x1, c31); c32 = Vector512.FusedMultiplyAdd(w3, x2, c32); c33 = Vector512.FusedMultiplyAdd(w3, x3, c33);
            var w4 = Vector512.Create(s[4 * rowStride]);
            c40 = Vector512.FusedMultiplyAdd(w4, x0, c40); c41 = Vector512.FusedMultiplyAdd(w4, x1, c41); c42 = Vector512.FusedMultiplyAdd(w4, x2, c42); c43 = Vector512.FusedMultiplyAdd(w4, x3, c43);
            var w5 = Vector512.Create(s[5 * rowStride]);
            c50 = Vector512.FusedMultiplyAdd(w5, x0, c50); c51 = Vector512.FusedMultiplyAdd(w5, x1, c51); c52 = Vector512.FusedMultiplyAdd(w5, x2, c52); c53 = Vector512.FusedMultiplyAdd(w5, x3, c53);
        }
        for (int q = 0; q < sums.Length; q++)
        {
            float* sq = stack + q * numel;
            float* r0 = sq + 0 * inFeatures;
            float* r1 = sq + 1 * inFeatures;
            float* r2 = sq + 2 * inFeatures;
            float* r3 = sq + 3 * inFeatures;
            float* r4 = sq + 4 * inFeatures;
            float* r5 = sq + 5 * inFeatures;
            var acc = c00 * Vector512.Load(r0 + 0) + c01 * Vector512.Load(r0 + 16) + c02 * Vector512.Load(r0 + 32) + c03 * Vector512.Load(r0 + 48);
            acc += c10 * Vector512.Load(r1 + 0) + c11 * Vector512.Load(r1 + 16) + c12 * Vector512.Load(r1 + 32) + c13 * Vector512.Load(r1 + 48);
            acc += c20 * Vector512.Load(r2 + 0) + c21 * Vector512.Load(r2 + 16) + c22 * Vector512.Load(r2 + 32) + c23 * Vector512.Load(r2 + 48);
            acc += c30 * Vector512.Load(r3 + 0) + c31 * Vector512.Load(r3 + 16) + c32 * Vector512.Load(r3 + 32) + c33 * Vector512.Load(r3 + 48);
            acc += c40 * Vector512.Load(r4 + 0) + c41 * Vector512.Load(r4 + 16) + c42 * Vector512.Load(r4 + 32) + c43 * Vector512.Load(r4 + 48);
            acc += c50 * Vector512.Load(r5 + 0) + c51 * Vector512.Load(r5 + 16) + c52 * Vector512.Load(r5 + 32) + c53 * Vector512.Load(r5 + 48);
            sums[q] += Vector512.Sum(acc);
        }
    }

    /// <summary>
    /// c[i][0..Lanes) (+)= Σq a[i·rowStride + q·stepStride]·b[q·bStride + 0..Lanes) for i &lt; Rows and q &lt; count,
    /// every accumulator in a register: 6 × 64 with AVX-512, 3 × 56 with AVX2.
    /// </summary>
    private static void Kernel(bool wide, float* a, long rowStride, long stepStride, int count, float* b, long bStride, float* c, long cStride, bool accumulate)
    {
        if (wide) Kernel512(a, rowStride, stepStride, count, b, bStride, c, cStride, accumulate);
        else Kernel256(a, rowStride, stepStride, count, b, bStride, c, cStride, accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel512(float* a, long rowStride, long stepStride, int count, float* b, long bStride, float* c, long cStride, bool accumulate)
    {
        Vector512<float> c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33, c40, c41, c42, c43, c50, c51, c52, c53;
        if (accumulate)
        {
            c00 = Vector512.Load(c + 0 * cStride + 0); c01 = Vector512.Load(c + 0 * cStride + 16); c02 = Vector512.Load(c + 0 * cStride + 32); c03 = Vector512.Load(c + 0 * cStride + 48);
            c10 = Vector512.Load(c + 1 * cStride + 0); c11 = Vector512.Load(c + 1 * cStride + 16); c12 = Vector512.Load(c + 1 * cStride + 32); c13 = Vector512.Load(c + 1 * cStride + 48);
            c20 = Vector512.Load(c + 2 * cStride + 0); c21 = Vector512.Load(c + 2 * cStride + 16); c22 = Vector512.Load(c + 2 * cStride + 32); c23 = Vector512.Load(c + 2 * cStride + 48);
            c30 = Vector512.Load(c + 3 * cStride + 0); c31 = Vector512.Load(c + 3 * cStride + 16); c32 = Vector512.Load(c + 3 * cStride + 32); c33 = Vector512.Load(c + 3 * cStride + 48);
            c40 = Vector512.Load(c + 4 * cStride + 0); c41 = Vector512.Load(c + 4 * cStride + 16); c42 = Vector512.Load(c + 4 * cStride + 32); c43 = Vector512.Load(c + 4 * cStride + 48);
            c50 = Vector512.Load(c + 5 * cStride + 0); c51 = Vector512.Load(c + 5 * cStride + 16); c52 = Vector512.Load(c + 5 * cStride + 32); c53 = Vector512.Load(c + 5 * cStride + 48);
        }
        else
        {
            c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = c40 = c41 = c42 = c43 = c50 = c51 = c52 = c53 = Vector512<float>.Zero;
        }
        for (int step = 0; step < count; step++)
        {
            float* bs = b + step * bStride, s = a + step * stepStride;
            var x0 = Vector512.Load(bs + 0); var x1 = Vector512.Load(bs + 16); var x2 = Vector512.Load(bs + 32); var x3 = Vector512.Load(bs + 48);
            var w0 = Vector512.Create(s[0 * rowStride]);
            c00 = Vector512.FusedMultiplyAdd(w0, x0, c00); c01 = Vector512.FusedMultiplyAdd(w0, x1, c01); c02 = Vector512.FusedMultiplyAdd(w0, x2, c02); c03 = Vector512.FusedMultiplyAdd(w0, x3, c03);
            var w1 = Vector512.Create(s[1 * rowStride]);
            c10 = Vector512.FusedMultiplyAdd(w1, x0, c10); c11 = Vector512.FusedMultiplyAdd(w1, x1, c11); c12 = Vector512.FusedMultiplyAdd(w1, x2, c12); c13 = Vector512.FusedMultiplyAdd(w1, x3, c13);
            var w2 = Vector512.Create(s[2 * rowStride]);
            c20 = Vector512.FusedMultiplyAdd(w2, x0, c20); c21 = Vector512.FusedMultiplyAdd(w2, x1, c21); c22 = Vector512.FusedMultiplyAdd(w2, x2, c22); c23 = Vector512.FusedMultiplyAdd(w2, x3, c23);
            var w3 = Vector512.Create(s[3 * rowStride]);
            c30 = Vector512.FusedMultiplyAdd(w3, x0, c30); c31 = Vector512.FusedMultiplyAdd(w3, x1, c31); c32 = Vector512.FusedMultiplyAdd(w3, x2, c32); c33 = Vector512.FusedMultiplyAdd(w3, x3, c33);
            var w4 = Vector512.Create(s[4 * rowStride]);
            c40 = Vector512.FusedMultiplyAdd(w4, x0, c40); c41 = Vector512.FusedMultiplyAdd(w4, x1, c41); c42 = Vector512.FusedMultiplyAdd(w4, x2, c42); c43 = Vector512.FusedMultiplyAdd(w4, x3, c43);
            var w5 = Vector512.Create(s[5 * rowStride]);
            c50 = Vector512.FusedMultiplyAdd(w5, x0, c50); c51 = Vector512.FusedMultiplyAdd(w5, x1, c51); c52 = Vector512.FusedMultiplyAdd(w5, x2, c52); c53 = Vector512.FusedMultiplyAdd(w5, x3, c53);
        }
        c00.Store(c + 0 * cStride + 0); c01.Store(c + 0 * cStride + 16); c02.Store(c + 0 * cStride + 32); c03.Store(c + 0 * cStride + 48);
        c10.Store(c + 1 * cStride + 0); c11.Store(c + 1 * cStride + 16); c12.Store(c + 1 * cStride + 32); c13.Store(c + 1 * cStride + 48);
        c20.Store(c + 2 * cStride + 0); c21.Store(c + 2 * cStride + 16); c22.Store(c + 2 * cStride + 32); c23.Store(c + 2 * cStride + 48);
        c30.Store(c + 3 * cStride + 0); c31.Store(c + 3 * cStride + 16); c32.Store(c + 3 * cStride + 32); c33.Store(c + 3 * cStride + 48);
        c40.Store(c + 4 * cStride + 0); c41.Store(c + 4 * cStride + 16); c42.Store(c + 4 * cStride + 32); c43.Store(c + 4 * cStride + 48);
        c50.Store(c + 5 * cStride + 0); c51.Store(c + 5 * cStride + 16); c52.Store(c + 5 * cStride + 32); c53.Store(c + 5 * cStride + 48);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel256(float* a, long rowStride, long stepStride, int count, float* b, long bStride, float* c, long cStride, bool accumulate)
    {
        Vector256<float> c00, c01, c02, c03, c04, c05, c06, c10, c11, c12, c13, c14, c15, c16, c20, c21, c22, c23, c24, c25, c26;
        if (accumulate)
        {
            c00 = Vector256.Load(c + 0 * cStride + 0); c01 = Vector256.Load(c + 0 * cStride + 8); c02 = Vector256.Load(c + 0 * cStride + 16); c03 = Vector256.Load(c + 0 * cStride + 24); c04 = Vector256.Load(c + 0 * cStride + 32); c05 = Vector256.Load(c + 0 * cStride + 40); c06 = Vector256.Load(c + 0 * cStride + 48);
            c10 = Vector256.Load(c + 1 * cStride + 0); c11 = Vector256.Load(c + 1 * cStride + 8); c12 = Vector256.Load(c + 1 * cStride + 16); c13 = Vector256.Load(c + 1 * cStride + 24); c14 = Vector256.Load(c + 1 * cStride + 32); c15 = Vector256.Load(c + 1 * cStride + 40); c16 = Vector256.Load(c + 1 * cStride + 48);
            c20 = Vector256.Load(c + 2 * cStride + 0); c21 = Vector256.Load(c + 2 * cStride + 8); c22 = Vector256.Load(c + 2 * cStride + 16); c23 = Vector256.Load(c + 2 * cStride + 24); c24 = Vector256.Load(c + 2 * cStride + 32); c25 = Vector256.Load(c + 2 * cStride + 40); c26 = Vector256.Load(c + 2 * cStride + 48);
        }
        else
        {
            c00 = c01 = c02 = c03 = c04 = c05 = c06 = c10 = c11 = c12 = c13 = c14 = c15 = c16 = c20 = c21 = c22 = c23 = c24 = c25 = c26 = Vector256<float>.Zero;
        }
        for (int step = 0; step < count; step++)
        {
            float* bs = b + step * bStride, s = a + step * stepStride;
            var x0 = Vector256.Load(bs + 0); var x1 = Vector256.Load(bs + 8); var x2 = Vector256.Load(bs + 16); var x3 = Vector256.Load(bs + 24); var x4 = Vector256.Load(bs + 32); var x5 = Vector256.Load(bs + 40); var x6 = Vector256.Load(bs + 48);
            var w0 = Vector256.Create(s[0 * rowStride]);
            c00 = Vector256.FusedMultiplyAdd(w0, x0, c00); c01 = Vector256.FusedMultiplyAdd(w0, x1, c01); c02 = Vector256.FusedMultiplyAdd(w0, x2, c02); c03 = Vector256.FusedMultiplyAdd(w0, x3, c03); c04 = Vector256.FusedMultiplyAdd(w0, x4, c04); c05 = Vector256.FusedMultiplyAdd(w0, x5, c05); c06 = Vector256.FusedMultiplyAdd(w0, x6, c06);
            var w1 = Vector256.Create(s[1 * rowStride]);
            c10 = Vector256.FusedMultiplyAdd(w1, x0, c10); c11 = Vector256.FusedMultiplyAdd(w1, x1, c11); c12 = Vector256.FusedMultiplyAdd(w1, x2, c12); c13 = Vector256.FusedMultiplyAdd(w1, x3, c13); c14 = Vector256.FusedMultiplyAdd(w1, x4, c14); c15 = Vector256.FusedMultiplyAdd(w1, x5, c15); c16 = Vector256.FusedMultiplyAdd(w1, x6, c16);
            var w2 = Vector256.Create(s[2 * rowStride]);
            c20 = Vector256.FusedMultiplyAdd(w2, x0, c20); c21 = Vector256.FusedMultiplyAdd(w2, x1, c21); c22 = Vector256.FusedMultiplyAdd(w2, x2, c22); c23 = Vector256.FusedMultiplyAdd(w2, x3, c23); c24 = Vector256.FusedMultiplyAdd(w2, x4, c24); c25 = Vector256.FusedMultiplyAdd(w2, x5, c25); c26 = Vector256.FusedMultiplyAdd(w2, x6, c26);
        }
        c00.Store(c + 0 * cStride + 0); c01.Store(c + 0 * cStride + 8); c02.Store(c + 0 * cStride + 16); c03.Store(c + 0 * cStride + 24); c04.Store(c + 0 * cStride + 32); c05.Store(c + 0 * cStride + 40); c06.Store(c + 0 * cStride + 48);
        c10.Store(c + 1 * cStride + 0); c11.Store(c + 1 * cStride + 8); c12.Store(c + 1 * cStride + 16); c13.Store(c + 1 * cStride + 24); c14.Store(c + 1 * cStride + 32); c15.Store(c + 1 * cStride + 40); c16.Store(c + 1 * cStride + 48);
        c20.Store(c + 2 * cStride + 0); c21.Store(c + 2 * cStride + 8); c22.Store(c + 2 * cStride + 16); c23.Store(c + 2 * cStride + 24); c24.Store(c + 2 * cStride + 32); c25.Store(c + 2 * cStride + 40); c26.Store(c + 2 * cStride + 48);
    }
}
