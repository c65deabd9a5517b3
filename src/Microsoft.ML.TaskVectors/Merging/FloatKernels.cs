using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// Raw access to the memory of contiguous float32 CPU tensors, and element ranges split over the
/// cores, for the merge kernels written in C# (histograms, TIES, DARE) that would otherwise take
/// several libtorch passes and temporaries per tensor.
/// </summary>
internal static unsafe class FloatKernels
{
    /// <summary>Fewest elements worth handing to another core.</summary>
    internal const long MinParallelElements = 1 << 16;

    /// <summary>
    /// Address of the first element of <paramref name="tensor"/>, which must be a contiguous
    /// float32 CPU tensor; null when it is empty. The memory stays valid while the tensor lives.
    /// </summary>
    public static float* Pointer(torch.Tensor tensor)
    {
        if (tensor.dtype != torch.ScalarType.Float32 || tensor.device_type != DeviceType.CPU || !tensor.is_contiguous())
        {
            throw new ArgumentException("A contiguous float32 CPU tensor is required.", nameof(tensor));
        }

        long n = tensor.numel();
        if (n == 0)
        {
            return null;
        }

        if (n <= int.MaxValue / sizeof(float))
        {
            return (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(tensor.bytes));
        }

        // Spans stop at 2 GB: take the address of a one-element view of the first entry.
        using var flat = tensor.view(-1);
        using var first = flat.narrow(0, 0, 1);
        return (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(first.bytes));
    }

    /// <summary>
    /// <paramref name="tensor"/> as a contiguous float32 CPU tensor: itself when it already is one,
    /// otherwise a converted copy (registered in the current dispose scope).
    /// </summary>
    public static torch.Tensor AsContiguousFloat32(torch.Tensor tensor)
    {
        var t = tensor.dtype == torch.ScalarType.Float32 ? tensor : tensor.to(torch.ScalarType.Float32);
        t = t.device_type == DeviceType.CPU ? t : t.cpu();
        return t.is_contiguous() ? t : t.contiguous();
    }

    /// <summary>Number of pieces to split <paramref name="n"/> elements into (one per core, fewer for small work).</summary>
    public static int Pieces(long n) =>
        (int)Math.Clamp(n / MinParallelElements, 1, Environment.ProcessorCount);

    /// <summary>
    /// Calls <paramref name="body"/>(piece, start, end) for <paramref name="pieces"/> consecutive
    /// ranges covering [0, <paramref name="n"/>), in parallel when there is more than one. Ranges
    /// are aligned to 64 elements so vector loops see whole vectors except at the end.
    /// </summary>
    public static void ForRanges(long n, int pieces, Action<int, long, long> body)
    {
        if (pieces <= 1 || n <= MinParallelElements)
        {
            body(0, 0, n);
            return;
        }

        long step = ((n + pieces - 1) / pieces + 63) & ~63L;
        int count = (int)((n + step - 1) / step);
        Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = pieces }, i =>
        {
            long start = i * step;
            body(i, start, Math.Min(n, start + step));
        });
    }

    /// <summary>
    /// Runs <paramref name="body"/>(worker, item) for items 0 … count − 1, taken in order by up to
    /// <paramref name="workers"/> threads; the first exception (cancellation included) is rethrown as itself.
    /// </summary>
    public static void RunWorkers(int count, int workers, Action<int, int> body)
    {
        int next = -1;
        try
        {
            Parallel.For(0, Math.Clamp(count, 1, workers), new ParallelOptions { MaxDegreeOfParallelism = workers }, worker =>
            {
                for (int item; (item = Interlocked.Increment(ref next)) < count;)
                {
                    body(worker, item);
                }
            });
        }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
        }
    }
}
