namespace Microsoft.ML.TaskVectors.Runtime;

/// <summary>Resident memory of this process, from Linux's /proc (0 on other systems).</summary>
public static class ProcessMemory
{
    /// <summary>Current resident set size in bytes.</summary>
    public static long Resident => Read("VmRSS:");

    /// <summary>Peak resident set size in bytes since start or since the last <see cref="ResetPeak"/>.</summary>
    public static long Peak => Read("VmHWM:");

    /// <summary>Resets the peak to the current size (writes 5 to /proc/self/clear_refs); false when not possible.</summary>
    public static bool ResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static long Read(string key)
    {
        if (!File.Exists("/proc/self/status")) return 0;
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(key, StringComparison.Ordinal))
                return long.Parse(line[key.Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        return 0;
    }
}
