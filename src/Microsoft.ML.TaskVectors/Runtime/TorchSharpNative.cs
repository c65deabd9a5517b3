using System.Runtime.InteropServices;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Runtime;

/// <summary>Locates TorchSharp's native library (Linux) in the application's output layout.</summary>
internal static class TorchSharpNative
{
    public const string LibraryFileName = "libLibTorchSharp.so";

    /// <summary>The marker the build's compatibility step writes next to the library.</summary>
    public const string MarkerSuffix = ".compat.json";

    /// <summary>Where the library can be, most specific first: runtimes/&lt;rid&gt;/native, then flat (RID-specific builds).</summary>
    public static IEnumerable<string> CandidatePaths()
    {
        var roots = new List<string> { AppContext.BaseDirectory };
        string? torchDir = Path.GetDirectoryName(typeof(torch).Assembly.Location);
        if (!string.IsNullOrEmpty(torchDir))
            roots.Add(torchDir);

        string arch = RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string root in roots.Select(Path.GetFullPath).Distinct(StringComparer.Ordinal))
        {
            string[] paths =
            [
                Path.Combine(root, "runtimes", RuntimeInformation.RuntimeIdentifier, "native", LibraryFileName),
                Path.Combine(root, "runtimes", "linux-" + arch, "native", LibraryFileName),
                Path.Combine(root, LibraryFileName),
            ];
            foreach (string path in paths)
            {
                if (seen.Add(path))
                    yield return path;
            }
        }
    }

    /// <summary>The path the dynamic loader mapped libLibTorchSharp.so from, or null when it is not loaded (or not Linux).</summary>
    public static string? LoadedPath()
    {
        if (!OperatingSystem.IsLinux())
            return null;
        try
        {
            foreach (string line in File.ReadLines("/proc/self/maps"))
            {
                int slash = line.IndexOf('/');
                if (slash >= 0 && line.EndsWith("/" + LibraryFileName, StringComparison.Ordinal))
                    return line[slash..].Trim();
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return null;
    }
}
