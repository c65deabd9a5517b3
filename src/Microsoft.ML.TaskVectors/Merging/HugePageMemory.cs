using System.Runtime.InteropServices;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// Native buffers of several MB that are filled once and freed soon after (the magnitude search's
/// collections). On Linux they are 2 MB-aligned and advised for transparent huge pages: the first
/// touch of a fresh 4 KB page can cost 10 µs or more on virtual machines, one fault per 2 MB
/// costs a small fraction of that. Pages never touched cost no memory either way.
/// </summary>
internal static unsafe partial class HugePageMemory
{
    private const nuint HugePage = 2 << 20;
    private const int MadviseHugePage = 14; // MADV_HUGEPAGE

    /// <summary>Allocates <paramref name="bytes"/> (not zeroed); free with <see cref="Free"/>.</summary>
    public static void* Allocate(long bytes)
    {
        nuint size = (nuint)Math.Max(bytes, 1);
        if (!OperatingSystem.IsLinux() || size < HugePage)
        {
            return NativeMemory.AlignedAlloc(size, 64);
        }

        size = (size + HugePage - 1) / HugePage * HugePage;
        var memory = NativeMemory.AlignedAlloc(size, HugePage);
        _ = Madvise(memory, size, MadviseHugePage); // only advice: without it the pages are ordinary ones
        return memory;
    }

    /// <summary>A buffer of <paramref name="bytes"/> holding the first <paramref name="kept"/> bytes of <paramref name="memory"/>, which is freed.</summary>
    public static void* Reallocate(void* memory, long kept, long bytes)
    {
        var grown = Allocate(bytes);
        Buffer.MemoryCopy(memory, grown, bytes, Math.Min(kept, bytes));
        Free(memory);
        return grown;
    }

    /// <summary>Frees a buffer from <see cref="Allocate"/> (null is ignored).</summary>
    public static void Free(void* memory) => NativeMemory.AlignedFree(memory);

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(void* address, nuint length, int advice);
}
