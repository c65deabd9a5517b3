using System.Globalization;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Runtime;

/// <summary>
/// What this process runs on: .NET, OS, ML.NET, TorchSharp/libtorch, ONNX Runtime, devices and the Linux libstdc++
/// compatibility step. Collecting never throws: a component that fails to load is described in the text fields.
/// </summary>
public sealed class EnvironmentReport
{
    private const string Unavailable = "unavailable";

    /// <summary>The .NET runtime, e.g. ".NET 10.0.1".</summary>
    public required string DotNetRuntime { get; init; }

    /// <summary>The operating system (distribution name on Linux).</summary>
    public required string OperatingSystem { get; init; }

    /// <summary>The process architecture, e.g. "X64".</summary>
    public required string ProcessArchitecture { get; init; }

    /// <summary><see cref="Environment.ProcessorCount"/>.</summary>
    public required int ProcessorCount { get; init; }

    /// <summary>The ML.NET version (informational version of MLContext's assembly).</summary>
    public required string MLNetVersion { get; init; }

    /// <summary>The TorchSharp managed package version.</summary>
    public required string TorchSharpVersion { get; init; }

    /// <summary>The libtorch version TorchSharp was built against (<c>torch.__version__</c>), or "unavailable".</summary>
    public required string LibTorchVersion { get; init; }

    /// <summary>True when TorchSharp's native backend loaded.</summary>
    public required bool TorchSharpLoaded { get; init; }

    /// <summary>Why TorchSharp did not load; null when it did.</summary>
    public string? TorchSharpError { get; init; }

    /// <summary>Whether torch sees CUDA; null when TorchSharp did not load.</summary>
    public bool? TorchCudaAvailable { get; init; }

    /// <summary>The number of CUDA devices torch sees; null when TorchSharp did not load.</summary>
    public int? TorchCudaDeviceCount { get; init; }

    /// <summary><c>torch.get_num_threads()</c>; null when TorchSharp did not load.</summary>
    public int? TorchThreads { get; init; }

    /// <summary>libgomp's wait settings (see <see cref="Runtime.OpenMpWaitPolicy"/>).</summary>
    public string OpenMpWaitPolicy { get; init; } = Runtime.OpenMpWaitPolicy.Describe();

    /// <summary>The transparent huge page mode, which the magnitude search's large buffers ask for (see <c>HugePageMemory</c>).</summary>
    public string TransparentHugePages { get; init; } = HugePageMemory.Describe();

    /// <summary>The ONNX Runtime native version, or "unavailable".</summary>
    public required string OnnxRuntimeVersion { get; init; }

    /// <summary>True when ONNX Runtime's native library loaded.</summary>
    public required bool OnnxRuntimeLoaded { get; init; }

    /// <summary>Why ONNX Runtime did not load; null when it did.</summary>
    public string? OnnxRuntimeError { get; init; }

    /// <summary>ONNX Runtime's available execution providers.</summary>
    public IReadOnlyList<string> OnnxRuntimeExecutionProviders { get; init; } = [];

    /// <summary>True when "CUDAExecutionProvider" is available; null when ONNX Runtime did not load.</summary>
    public bool? OnnxRuntimeCudaAvailable { get; init; }

    /// <summary>The state of the libstdc++ compatibility step.</summary>
    public required CompatibilityStep LibStdCxxCompatibility { get; init; }

    /// <summary>True when both TorchSharp and ONNX Runtime loaded.</summary>
    public bool IsHealthy => TorchSharpLoaded && OnnxRuntimeLoaded;

    /// <summary>Gathers the report. Loads TorchSharp and ONNX Runtime if they are not loaded yet.</summary>
    public static EnvironmentReport Collect()
    {
        bool torchLoaded = false;
        string? torchError = null;
        try
        {
            ComputeDevice.EnsureTorchLoaded();
            torchLoaded = true;
        }
        catch (Exception e)
        {
            torchError = e.Message;
        }

        bool? cuda = null;
        int? cudaDevices = null, threads = null;
        string libtorch = Unavailable;
        if (torchLoaded)
        {
            libtorch = Try(() => torch.__version__);
            cuda = TryValue(() => torch.cuda.is_available());
            cudaDevices = TryValue(() => torch.cuda.device_count());
            threads = TryValue(() => torch.get_num_threads());
        }

        bool ortLoaded = false;
        string? ortError = null;
        string ortVersion = Unavailable;
        IReadOnlyList<string> providers = [];
        try
        {
            var env = OrtEnv.Instance();
            ortVersion = env.GetVersionString();
            providers = env.GetAvailableProviders();
            ortLoaded = true;
        }
        catch (Exception e)
        {
            ortError = Describe(e);
        }

        return new EnvironmentReport
        {
            DotNetRuntime = Try(() => RuntimeInformation.FrameworkDescription),
            OperatingSystem = Try(DescribeOperatingSystem),
            ProcessArchitecture = RuntimeInformation.ProcessArchitecture.ToString(),
            ProcessorCount = Environment.ProcessorCount,
            MLNetVersion = Try(() => InformationalVersion(typeof(MLContext).Assembly)),
            TorchSharpVersion = Try(() => InformationalVersion(typeof(torch).Assembly)),
            LibTorchVersion = libtorch,
            TorchSharpLoaded = torchLoaded,
            TorchSharpError = torchError,
            TorchCudaAvailable = cuda,
            TorchCudaDeviceCount = cudaDevices,
            TorchThreads = threads,
            OnnxRuntimeVersion = ortVersion,
            OnnxRuntimeLoaded = ortLoaded,
            OnnxRuntimeError = ortError,
            OnnxRuntimeExecutionProviders = providers,
            OnnxRuntimeCudaAvailable = ortLoaded ? providers.Contains("CUDAExecutionProvider") : null,
            LibStdCxxCompatibility = CompatibilityStep.Detect(torchLoaded),
        };
    }

    /// <summary>Label/value pairs in display order, for tables.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> ToDisplayRows()
    {
        var rows = new List<KeyValuePair<string, string>>
        {
            new(".NET runtime", DotNetRuntime),
            new("Operating system", OperatingSystem),
            new("Architecture / processors", $"{ProcessArchitecture} / {ProcessorCount.ToString(CultureInfo.InvariantCulture)}"),
            new("ML.NET", MLNetVersion),
            new("TorchSharp", TorchSharpVersion),
            new("libtorch", LibTorchVersion),
        };
        if (TorchSharpError is not null)
            rows.Add(new("TorchSharp error", TorchSharpError));
        rows.Add(new("Torch CUDA", TorchCudaAvailable switch
        {
            null => Unavailable,
            true => $"available ({TorchCudaDeviceCount?.ToString(CultureInfo.InvariantCulture) ?? "?"} device(s))",
            false => "not available",
        }));
        rows.Add(new("Torch threads", TorchThreads?.ToString(CultureInfo.InvariantCulture) ?? Unavailable));
        rows.Add(new("OpenMP wait policy", OpenMpWaitPolicy));
        rows.Add(new("Transparent huge pages", TransparentHugePages));
        rows.Add(new("ONNX Runtime", OnnxRuntimeVersion));
        if (OnnxRuntimeError is not null)
            rows.Add(new("ONNX Runtime error", OnnxRuntimeError));
        rows.Add(new("ONNX Runtime providers", OnnxRuntimeExecutionProviders.Count == 0 ? "none" : string.Join(", ", OnnxRuntimeExecutionProviders)));
        rows.Add(new("ONNX Runtime CUDA", OnnxRuntimeCudaAvailable switch { null => Unavailable, true => "available", false => "not available" }));
        rows.Add(new("libstdc++ compatibility", LibStdCxxCompatibility.Summary));
        return rows;
    }

    /// <summary>The report as indented camelCase JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, // console output, not HTML: keep "libstdc++" readable
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
    };

    private static string DescribeOperatingSystem()
    {
        // /etc/os-release names the distribution, which matters more here (libstdc++ age) than the kernel.
        if (System.OperatingSystem.IsLinux() && File.Exists("/etc/os-release"))
        {
            foreach (string line in File.ReadLines("/etc/os-release"))
            {
                if (line.StartsWith("PRETTY_NAME=", StringComparison.Ordinal))
                    return line["PRETTY_NAME=".Length..].Trim('"');
            }
        }
        return RuntimeInformation.OSDescription;
    }

    private static string InformationalVersion(Assembly assembly)
    {
        string? version = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
            ?? assembly.GetName().Version?.ToString();
        if (string.IsNullOrEmpty(version))
            return "unknown";
        int plus = version.IndexOf('+');
        return plus < 0 ? version : version[..plus]; // drop the commit hash
    }

    private static string Try(Func<string> read)
    {
        try
        {
            string value = read();
            return string.IsNullOrWhiteSpace(value) ? "unknown" : value;
        }
        catch (Exception e)
        {
            return $"{Unavailable}: {Describe(e)}";
        }
    }

    private static T? TryValue<T>(Func<T> read) where T : struct
    {
        try { return read(); }
        catch (Exception) { return null; }
    }

    private static string Describe(Exception e)
    {
        string message = e.GetBaseException().Message;
        int newline = message.IndexOf('\n');
        return newline < 0 ? message.Trim() : message[..newline].Trim();
    }
}
