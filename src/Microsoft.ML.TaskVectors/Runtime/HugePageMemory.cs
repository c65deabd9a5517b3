using System.Runtime.InteropServices;

namespace Microsoft.ML.TaskVectors.Runtime;

/// <summary>
/// Native buffers that fill many MB once (the global magnitude search's collections). On Linux each is
/// its own anonymous mapping, 2 MB-aligned and advised for transparent huge pages: the first touch of a
/// fresh 4 KB page can cost 10 µs or more on virtual machines, one fault per 2 MB a small fraction of
/// that; and freeing it unmaps it, where the C heap could keep it. Not for small buffers: each 2 MB page
/// touched is zeroed and counted whole, and the C heap's reuse of pages it has already touched is lost.
/// </summary>
internal static unsafe partial class HugePageMemory
{
    private const long HugePage = 2 << 20;
    private const int Header = 64; // the mapping's address and length, just before the buffer
    private const int ReadWrite = 0x3; // PROT_READ | PROT_WRITE
    private const int PrivateAnonymous = 0x22; // MAP_PRIVATE | MAP_ANONYMOUS
    private const int MadviseHugePage = 14; // MADV_HUGEPAGE

    /// <summary>Allocates <paramref name="bytes"/> (64-byte aligned, contents undefined); free with <see cref="Free"/>.</summary>
    public static void* Allocate(long bytes)
    {
        bytes = Math.Max(bytes, 1);
        if (!OperatingSystem.IsLinux())
        {
            return NativeMemory.AlignedAlloc((nuint)bytes, 64);
        }

        long length = bytes + Header + HugePage;
        var mapping = Mmap(null, (nuint)length, ReadWrite, PrivateAnonymous, -1, 0);
        if ((nint)mapping == -1)
        {
            throw new OutOfMemoryException($"Could not map {bytes} bytes for the merge's working memory.");
        }

        long start = ((long)mapping + Header + HugePage - 1) / HugePage * HugePage;
        _ = Madvise((void*)start, (nuint)(((long)mapping + length - start) / HugePage * HugePage), MadviseHugePage); // advice only
        ((long*)start)[-1] = (long)mapping;
        ((long*)start)[-2] = length;
        return (void*)start;
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
    public static void Free(void* memory)
    {
        if (memory is null)
        {
            return;
        }

        if (!OperatingSystem.IsLinux())
        {
            NativeMemory.AlignedFree(memory);
            return;
        }

        _ = Munmap((void*)((long*)memory)[-1], (nuint)((long*)memory)[-2]);
    }

    private const string ModeFile = "/sys/kernel/mm/transparent_hugepage/enabled";

    /// <summary>The system's transparent huge page mode and what it means for these buffers (for <c>doctor</c>).</summary>
    public static string Describe() =>
        Describe(OperatingSystem.IsLinux() && File.Exists(ModeFile) ? File.ReadAllText(ModeFile) : null);

    /// <summary>The same from the contents of the kernel's mode file (null: none), e.g. "always [madvise] never".</summary>
    internal static string Describe(string? modeFile)
    {
        if (modeFile is null)
        {
            return "not on this system (the merge's large buffers use ordinary pages)";
        }

        int open = modeFile.IndexOf('['), close = modeFile.IndexOf(']');
        string mode = open >= 0 && close > open ? modeFile[(open + 1)..close] : modeFile.Trim();
        return mode switch
        {
            "always" or "madvise" => $"{mode} (the merge's large buffers use them)",
            "never" => "never (the merge's large buffers use 4 KB pages: slower on virtual machines)",
            _ => mode,
        };
    }

    [LibraryImport("libc", EntryPoint = "mmap")]
    private static partial void* Mmap(void* address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "munmap")]
    private static partial int Munmap(void* address, nuint length);

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(void* address, nuint length, int advice);
}
