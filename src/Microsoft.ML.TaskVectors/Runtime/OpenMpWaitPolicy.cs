using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Microsoft.ML.TaskVectors.Runtime;

/// <summary>
/// Keeps libtorch's OpenMP workers from spin-waiting between operations on Linux. libgomp lets each worker spin
/// for 300,000 iterations after every parallel operation (milliseconds); the composition engine's fused kernels run
/// on .NET threads right after such operations and would share the cores with the spinning workers (measured on
/// ViT-B/32: the per-sample forward 1.57× the plain forward with spinning, 1.12× without). libgomp reads its
/// settings once, when libtorch loads, so this runs when this assembly loads: it sets <c>GOMP_SPINCOUNT=0</c> unless
/// <c>GOMP_SPINCOUNT</c> or <c>OMP_WAIT_POLICY</c> is already set, which is how to keep libgomp's own default.
/// </summary>
public static class OpenMpWaitPolicy
{
    /// <summary>The variable this sets.</summary>
    public const string SpinCountVariable = "GOMP_SPINCOUNT";

    /// <summary>True when this assembly set <c>GOMP_SPINCOUNT=0</c> for the process.</summary>
    public static bool AppliedByLibrary { get; private set; }

    /// <summary>GOMP_SPINCOUNT and OMP_WAIT_POLICY as the native environment has them, e.g. "GOMP_SPINCOUNT=0".</summary>
    public static string Describe()
    {
        var set = new[] { SpinCountVariable, "OMP_WAIT_POLICY" }
            .Select(name => (name, value: Environment.GetEnvironmentVariable(name)))
            .Where(v => v.value is not null)
            .Select(v => $"{v.name}={v.value}")
            .ToArray();
        string text = set.Length == 0 ? "libgomp default (spinning)" : string.Join(", ", set);
        return AppliedByLibrary ? text + " (set by Microsoft.ML.TaskVectors)" : text;
    }

    [ModuleInitializer]
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2255", Justification = "libgomp reads the variable once, when libtorch loads: only a module initializer runs early enough.")]
    internal static void Apply()
    {
        if (!OperatingSystem.IsLinux()
            || Environment.GetEnvironmentVariable(SpinCountVariable) is not null
            || Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is not null)
            return;
        try
        {
            // .NET's Environment keeps its own copy; native code (libgomp) reads libc's.
            if (setenv(SpinCountVariable, "0", 0) != 0) return;
            Environment.SetEnvironmentVariable(SpinCountVariable, "0");
            AppliedByLibrary = true;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // Not glibc/musl: nothing to tune.
        }
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int setenv(string name, string value, int overwrite);
}
