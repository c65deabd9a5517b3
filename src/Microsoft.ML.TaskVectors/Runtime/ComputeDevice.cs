using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Runtime;

/// <summary>
/// Turns a device request ("auto", "cpu", "cuda", "cuda:N") into a <see cref="torch.Device"/>, and loads TorchSharp
/// with an actionable error when the native library cannot be loaded.
/// </summary>
public static class ComputeDevice
{
    /// <summary>The request that picks CUDA device 0 when available and the CPU otherwise.</summary>
    public const string Auto = "auto";

    /// <summary>Where the Linux libstdc++ compatibility step is documented.</summary>
    public const string CompatibilityDocument = "docs/linux-compatibility.md";

    private static readonly object s_gate = new();
    private static bool s_loaded;
    private static Exception? s_loadFailure;

    /// <summary>
    /// Resolves <paramref name="requested"/> to a device. CUDA is used when requested and available; otherwise the
    /// CPU, unless <paramref name="requireRequested"/> is set.
    /// </summary>
    /// <param name="requested">"auto" (or null/empty), "cpu", "cuda" or "cuda:N"; case-insensitive.</param>
    /// <param name="requireRequested">Throw instead of falling back to the CPU when the requested CUDA device is unusable.</param>
    /// <exception cref="ArgumentException">The request is not one of the accepted forms.</exception>
    /// <exception cref="InvalidOperationException">
    /// <paramref name="requireRequested"/> is set and the CUDA device cannot be used, or TorchSharp cannot be loaded.
    /// </exception>
    public static torch.Device Resolve(string? requested = Auto, bool requireRequested = false)
    {
        var request = Parse(requested);
        EnsureTorchLoaded();
        if (request.Kind == RequestKind.Cpu)
            return torch.CPU;

        string? unavailable = CudaUnavailableReason(request.Index ?? 0);
        if (unavailable is null)
            return new torch.Device(DeviceType.CUDA, request.Index ?? 0);
        if (request.Kind == RequestKind.Cuda && requireRequested)
            throw new InvalidOperationException($"The requested device '{request.Text}' cannot be used: {unavailable}.");
        return torch.CPU;
    }

    /// <summary>True when TorchSharp loads and reports at least one CUDA device. Never throws.</summary>
    public static bool IsCudaAvailable()
    {
        try
        {
            EnsureTorchLoaded();
            return torch.cuda.is_available();
        }
        catch (Exception)
        {
            return false;
        }
    }

    /// <summary>
    /// Loads TorchSharp's native backend once. When the load fails because the system libstdc++ lacks a required
    /// GLIBCXX version, the exception explains the build's compatibility step and points to
    /// <see cref="CompatibilityDocument"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The native backend could not be loaded; the inner exception is the loader's or TorchSharp's.</exception>
    public static void EnsureTorchLoaded()
    {
        lock (s_gate)
        {
            if (s_loaded)
                return;
            // TorchSharp loads its native code in torch's static constructor, so a failure is permanent for the process.
            if (s_loadFailure is not null)
                throw s_loadFailure;
            // Diagnose first: when TorchSharp's own load fails it prints its trace to stdout and copies libtorch
            // out of the NuGet cache next to the app before giving up with a message that hides the real cause.
            var libStdCxxFailure = CheckSystemLibStdCxx();
            if (libStdCxxFailure is not null)
            {
                s_loadFailure = libStdCxxFailure;
                throw libStdCxxFailure;
            }
            try
            {
                torch.InitializeDeviceType(DeviceType.CPU);
                s_loaded = true;
            }
            catch (Exception e)
            {
                s_loadFailure = DescribeLoadFailure(e);
                throw s_loadFailure;
            }
        }
    }

    // Loads libLibTorchSharp.so directly, which keeps the loader's message that NativeLibrary.TryLoad (used by
    // TorchSharp) drops. A successful load is kept: TorchSharp then gets the same handle.
    private static InvalidOperationException? CheckSystemLibStdCxx()
    {
        if (!OperatingSystem.IsLinux())
            return null;
        string? library = TorchSharpNative.CandidatePaths().FirstOrDefault(File.Exists);
        if (library is null)
            return null;
        try
        {
            NativeLibrary.Load(library);
            return null;
        }
        catch (DllNotFoundException e)
        {
            return VersionNotFoundFailure(e.Message, library, e);
        }
    }

    private static InvalidOperationException DescribeLoadFailure(Exception e)
    {
        string? library = TorchSharpNative.CandidatePaths().FirstOrDefault(File.Exists);
        string? loaderMessage = null;
        if (library is not null)
        {
            try { NativeLibrary.Load(library); }
            catch (Exception probe) when (probe is DllNotFoundException or BadImageFormatException) { loaderMessage = probe.Message; }
        }
        var versionFailure = VersionNotFoundFailure(loaderMessage + "\n" + e, library, e);
        if (versionFailure is not null)
            return versionFailure;
        string reason = loaderMessage is not null ? FirstLine(loaderMessage) : FirstLine(e.GetBaseException().Message);
        return new InvalidOperationException($"TorchSharp's native library could not be loaded: {reason}", e);
    }

    private static InvalidOperationException? VersionNotFoundFailure(string text, string? library, Exception inner)
    {
        var match = VersionNotFound.Match(text);
        if (!match.Success)
            return null;
        string version = match.Groups["version"].Value;
        string line = FirstLineContaining(text, match.Value) ?? match.Value;
        return new InvalidOperationException(
            $"TorchSharp's native library could not be loaded because the system C++ runtime is too old ({line.Trim()}). " +
            $"The build normally fixes this for libLibTorchSharp.so in the output folder by marking the unused {version} requirement weak " +
            $"(the libstdc++ compatibility step); it has not been applied to {library ?? "the loaded copy"}. " +
            $"Rebuild without -p:TaskVectorsPatchLibTorchSharp=false, or see {CompatibilityDocument}, section \"Older distributions\".",
            inner);
    }

    private static readonly Regex VersionNotFound =
        new(@"version [`'‘]?(?<version>[A-Z]+_[0-9][0-9.]*)['’]? not found", RegexOptions.CultureInvariant);

    private static string FirstLine(string text)
    {
        int newline = text.IndexOf('\n');
        return (newline < 0 ? text : text[..newline]).Trim();
    }

    private static string? FirstLineContaining(string text, string fragment) =>
        text.Split('\n').FirstOrDefault(l => l.Contains(fragment, StringComparison.Ordinal));

    private static string? CudaUnavailableReason(int index)
    {
        if (!torch.cuda.is_available())
            return "CUDA is not available (TorchSharp found no usable CUDA device; builds on TorchSharp-cpu never have one, build with -p:TaskVectorsAccelerator=cuda)";
        int count = torch.cuda.device_count();
        return index < count ? null : $"CUDA device {index} does not exist ({count} device{(count == 1 ? "" : "s")} visible)";
    }

    private enum RequestKind { Auto, Cpu, Cuda }

    private readonly record struct Request(RequestKind Kind, int? Index, string Text);

    private static Request Parse(string? requested)
    {
        string text = (requested ?? "").Trim();
        string lower = text.ToLowerInvariant();
        if (lower.Length == 0 || lower == Auto)
            return new Request(RequestKind.Auto, null, Auto);
        if (lower == "cpu")
            return new Request(RequestKind.Cpu, null, lower);
        if (lower == "cuda")
            return new Request(RequestKind.Cuda, null, lower);
        if (lower.StartsWith("cuda:", StringComparison.Ordinal)
            && int.TryParse(lower.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out int index))
            return new Request(RequestKind.Cuda, index, lower);
        throw new ArgumentException($"Unknown device '{text}'. Use 'auto', 'cpu', 'cuda' or 'cuda:N'.", nameof(requested));
    }
}
