using System.Text.Json;
using System.Text.Json.Serialization;

namespace Microsoft.ML.TaskVectors.Runtime;

/// <summary>Whether the build's libstdc++ compatibility step applies to the TorchSharp library this process uses.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<CompatibilityStepState>))]
public enum CompatibilityStepState
{
    /// <summary>The system libstdc++ is new enough (or the platform is not Linux).</summary>
    NotNeeded,

    /// <summary>The missing libstdc++ versions were weakened in the output copy of libLibTorchSharp.so.</summary>
    Applied,

    /// <summary>The step did not run, was turned off, or refused to weaken a version.</summary>
    NotApplied,

    /// <summary>The library or its marker could not be found or read.</summary>
    Unknown,
}

/// <summary>
/// The state of the libstdc++ compatibility step, read from the <c>libLibTorchSharp.so.compat.json</c> marker the
/// build writes next to the library (see docs/linux-compatibility.md).
/// </summary>
public sealed class CompatibilityStep
{
    /// <summary>The overall state.</summary>
    public required CompatibilityStepState State { get; init; }

    /// <summary>One line for people, e.g. "applied: GLIBCXX_3.4.32 weakened".</summary>
    public required string Summary { get; init; }

    /// <summary>The libLibTorchSharp.so the state describes, when found.</summary>
    public string? Library { get; init; }

    /// <summary>The marker file, when present.</summary>
    public string? Marker { get; init; }

    /// <summary>The libstdc++ the build checked against, as recorded in the marker.</summary>
    public string? HostLibStdCxx { get; init; }

    /// <summary>The versions marked weak, as recorded in the marker.</summary>
    public IReadOnlyList<string> WeakenedVersions { get; init; } = [];

    /// <summary>
    /// Reads the marker next to the loaded libLibTorchSharp.so (or, when not loaded, the one in the app's
    /// runtimes/&lt;rid&gt;/native folder or base directory). Never throws.
    /// </summary>
    /// <param name="torchLoaded">Whether TorchSharp loaded; decides the state when there is no marker.</param>
    public static CompatibilityStep Detect(bool torchLoaded)
    {
        try
        {
            return DetectCore(torchLoaded);
        }
        catch (Exception e)
        {
            return new CompatibilityStep { State = CompatibilityStepState.Unknown, Summary = "unknown: " + e.Message };
        }
    }

    private static CompatibilityStep DetectCore(bool torchLoaded)
    {
        if (!OperatingSystem.IsLinux())
            return new CompatibilityStep { State = CompatibilityStepState.NotNeeded, Summary = "not needed (not Linux)" };

        string? library = TorchSharpNative.LoadedPath() ?? TorchSharpNative.CandidatePaths().FirstOrDefault(File.Exists);
        if (library is null)
            return new CompatibilityStep { State = CompatibilityStepState.Unknown, Summary = $"unknown ({TorchSharpNative.LibraryFileName} not found)" };

        string marker = library + TorchSharpNative.MarkerSuffix;
        if (!File.Exists(marker))
        {
            return torchLoaded
                ? new CompatibilityStep { State = CompatibilityStepState.NotNeeded, Summary = "not needed (no marker; TorchSharp loads)", Library = library }
                : new CompatibilityStep { State = CompatibilityStepState.NotApplied, Summary = "not applied (no marker next to the library)", Library = library };
        }

        using var json = JsonDocument.Parse(File.ReadAllText(marker));
        var root = json.RootElement;
        string status = root.TryGetProperty("status", out var s) ? s.GetString() ?? "" : "";
        string? host = root.TryGetProperty("hostLibStdCxx", out var h) ? h.GetString() : null;
        var weakened = Strings(root, "weakened");
        var refused = Strings(root, "refused");
        return status switch
        {
            "applied" => new CompatibilityStep
            {
                State = CompatibilityStepState.Applied,
                Summary = $"applied: {string.Join(", ", weakened)} weakened",
                Library = library, Marker = marker, HostLibStdCxx = host, WeakenedVersions = weakened,
            },
            "not-needed" => new CompatibilityStep
            {
                State = CompatibilityStepState.NotNeeded,
                Summary = "not needed (the system libstdc++ defines every required version)",
                Library = library, Marker = marker, HostLibStdCxx = host,
            },
            "refused" => new CompatibilityStep
            {
                State = CompatibilityStepState.NotApplied,
                Summary = $"not applied: refused to weaken {string.Join(", ", refused)} (symbols outside the allow-list)",
                Library = library, Marker = marker, HostLibStdCxx = host,
            },
            _ => new CompatibilityStep
            {
                State = CompatibilityStepState.Unknown,
                Summary = $"unknown marker status '{status}'",
                Library = library, Marker = marker, HostLibStdCxx = host,
            },
        };
    }

    private static string[] Strings(JsonElement root, string name) =>
        root.TryGetProperty(name, out var array) && array.ValueKind == JsonValueKind.Array
            ? array.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.String).Select(e => e.GetString()!).ToArray()
            : [];
}
