using System.Runtime.InteropServices;

namespace Microsoft.ML.TaskVectors.Runtime;

/// <summary>
/// Gives memory that libtorch freed back to the operating system. glibc keeps freed blocks for reuse
/// (which is what makes repeated tensor allocation fast), but passes that allocate tensors of many
/// sizes fragment the heap, and the retained memory then shows as resident long after it is free.
/// </summary>
public static partial class NativeHeap
{
    private const int MTrimThreshold = -1;
    private const int MMmapThreshold = -3;
    private static bool _unavailable = !OperatingSystem.IsLinux();

    /// <summary>
    /// Tunes glibc for streams of large tensors: blocks up to 32 MB come from the heap and up to
    /// <paramref name="retainBytes"/> of freed memory stays mapped. By default glibc returns freed
    /// blocks of a few MB to the system and every new tensor then pays page faults again, which
    /// makes allocation-heavy loops (merging, composition) several times slower. Process-wide;
    /// returns false where it does not apply (not Linux, or not glibc).
    /// </summary>
    public static bool ConfigureForTensorWorkloads(long retainBytes = 256L << 20)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(retainBytes);
        if (_unavailable) return false;
        try
        {
            return MallOpt(MMmapThreshold, 32 << 20) == 1 && MallOpt(MTrimThreshold, (int)Math.Min(int.MaxValue, retainBytes)) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            _unavailable = true;
            return false;
        }
    }

    /// <summary>Returns freed heap memory to the system now: glibc's malloc_trim(0) on Linux; does nothing elsewhere.</summary>
    public static void Trim()
    {
        if (_unavailable) return;
        try
        {
            MallocTrim(0);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            _unavailable = true; // musl and others have no malloc_trim
        }
    }

    /// <summary>
    /// Trims the heap when the process has grown by more than a budget since this guard was made;
    /// checked after each unit of streaming work, so resident memory stays near the budget without
    /// paying for a trim (and the page faults after it) on every step.
    /// </summary>
    public sealed class Guard(long budgetBytes)
    {
        private readonly long _baseline = ProcessMemory.Resident;

        /// <summary>Growth allowed before trimming.</summary>
        public long BudgetBytes { get; } = budgetBytes;

        /// <summary>Trims if over budget; true when it trimmed.</summary>
        public bool Check()
        {
            if (_unavailable || ProcessMemory.Resident - _baseline <= BudgetBytes) return false;
            Trim();
            return true;
        }
    }

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int MallOpt(int param, int value);

    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int MallocTrim(nuint pad);
}
