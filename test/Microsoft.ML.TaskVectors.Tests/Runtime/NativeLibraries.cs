using System.Reflection;
using System.Runtime.InteropServices;
using Microsoft.ML.TaskVectors.Build;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Tests.Runtime;

/// <summary>The TorchSharp native library in the test output, its unpatched original, and the host libstdc++.</summary>
internal static class NativeLibraries
{
    public const string Glibcxx3432 = "GLIBCXX_3.4.32";
    public const string IosBaseLibraryInit = "_ZSt21ios_base_library_initv";
    private const ushort MachineX8664 = 62;

    /// <summary>The copy the build put (and patched) in the test output.</summary>
    public static string OutputLibrary
    {
        get
        {
            Assume.That(OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64, "Linux x64 only.");
            string path = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
            Assert.That(path, Does.Exist);
            return path;
        }
    }

    /// <summary>The package's file from the NuGet cache, or null when the cache is elsewhere.</summary>
    public static string? PackageLibrary()
    {
        string root = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string? version = typeof(torch).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0];
        string path = Path.Combine(root, "torchsharp", version ?? "", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        return File.Exists(path) ? path : null;
    }

    /// <summary>
    /// The library as shipped: from the NuGet cache when available, otherwise the output copy with the weak flag
    /// of GLIBCXX_3.4.32 cleared again (the package ships it strong).
    /// </summary>
    public static byte[] PristineLibrary()
    {
        string? package = PackageLibrary();
        if (package is not null)
            return File.ReadAllBytes(package);
        byte[] bytes = File.ReadAllBytes(OutputLibrary);
        var v = ElfSymbolVersions.Read(bytes).Requirements.Single(r => r.Name == Glibcxx3432);
        bytes[v.FlagsOffset] &= unchecked((byte)~ElfSymbolVersions.VerFlagWeak);
        return bytes;
    }

    public static string HostLibStdCxx()
    {
        Assume.That(OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64, "Linux x64 only.");
        string? host = LibStdCxxCompat.FindHostLibStdCxx(MachineX8664);
        Assert.That(host, Is.Not.Null, "no libstdc++.so.6 found");
        return host!;
    }

    /// <summary>Skips the calling test unless the host libstdc++ lacks GLIBCXX_3.4.32 (Debian 12 and older).</summary>
    public static void AssumeHostLacksGlibcxx3432()
    {
        var definitions = ElfSymbolVersions.ReadFile(HostLibStdCxx()).Definitions;
        Assume.That(definitions, Does.Not.Contain(Glibcxx3432), "the host libstdc++ defines GLIBCXX_3.4.32; nothing to patch");
    }
}
