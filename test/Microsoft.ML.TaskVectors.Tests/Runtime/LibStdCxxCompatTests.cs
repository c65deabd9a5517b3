using System.Runtime.Versioning;
using System.Text.Json;
using Microsoft.ML.TaskVectors.Build;

namespace Microsoft.ML.TaskVectors.Tests.Runtime;

/// <summary>The ELF parsing and patching behind the build's libstdc++ compatibility step (build/ElfSymbolVersions.cs).</summary>
[SupportedOSPlatform("linux")]
public class LibStdCxxCompatTests
{
    private static readonly string[] DefaultAllowList = [LibStdCxxCompat.DefaultAllowedSymbols];

    [Test]
    public void Shipped_library_requires_GLIBCXX_3_4_32_strongly_and_only_for_ios_base_library_init()
    {
        var library = ElfSymbolVersions.Read(NativeLibraries.PristineLibrary());

        var v = library.Requirements.Single(r => r.Name == NativeLibraries.Glibcxx3432);
        Assert.That(v.File, Is.EqualTo("libstdc++.so.6"));
        Assert.That(v.Flags, Is.Zero);
        Assert.That(v.Symbols, Is.EqualTo(new[] { NativeLibraries.IosBaseLibraryInit }));
        Assert.That(library.Machine, Is.EqualTo(62), "x86-64");
        Assert.That(library.Requirements.Where(r => r.File == "libc.so.6").Select(r => r.Name), Does.Contain("GLIBC_2.2.5"));
        Assert.That(library.Requirements.Select(r => r.Index), Is.Unique, "vna_other indexes are unique");
    }

    [Test]
    public void Host_check_finds_that_this_libstdcxx_lacks_only_GLIBCXX_3_4_32()
    {
        string hostPath = NativeLibraries.HostLibStdCxx();
        var host = ElfSymbolVersions.ReadFile(hostPath);
        Assert.That(host.Definitions, Does.Contain("GLIBCXX_3.4").And.Contain("CXXABI_1.3"), "verdef parsed");
        NativeLibraries.AssumeHostLacksGlibcxx3432();

        var plan = LibStdCxxCompat.Plan(ElfSymbolVersions.Read(NativeLibraries.PristineLibrary()), host, hostPath, DefaultAllowList);

        Assert.That(plan.Status, Is.EqualTo(LibStdCxxCompatStatus.Applied));
        Assert.That(plan.Missing.Select(v => v.Name), Is.EqualTo(new[] { NativeLibraries.Glibcxx3432 }));
        Assert.That(plan.ToWeaken.Select(v => v.Name), Is.EqualTo(new[] { NativeLibraries.Glibcxx3432 }));
        Assert.That(plan.Refused, Is.Empty);
    }

    [Test]
    public void Patching_a_copy_sets_the_weak_flag_of_GLIBCXX_3_4_32_and_changes_no_other_byte()
    {
        NativeLibraries.AssumeHostLacksGlibcxx3432();
        using var dir = new TempDirectory();
        byte[] pristine = NativeLibraries.PristineLibrary();
        string path = WriteLibrary(dir, pristine, out var mode, out var lastWrite);

        var result = LibStdCxxCompat.PatchFile(path, NativeLibraries.HostLibStdCxx(), DefaultAllowList);

        Assert.That(result.LibraryRewritten, Is.True);
        byte[] patched = File.ReadAllBytes(path);
        var before = ElfSymbolVersions.Read(pristine).Requirements;
        var after = ElfSymbolVersions.Read(patched).Requirements;
        Assert.That(after.Select(r => r.Name), Is.EqualTo(before.Select(r => r.Name)));
        for (int i = 0; i < before.Count; i++)
        {
            ushort expected = before[i].Name == NativeLibraries.Glibcxx3432 ? (ushort)(before[i].Flags | 0x2) : before[i].Flags;
            Assert.That(after[i].Flags, Is.EqualTo(expected), before[i].Name);
        }
        long flagsOffset = before.Single(r => r.Name == NativeLibraries.Glibcxx3432).FlagsOffset;
        Assert.That(patched, Has.Length.EqualTo(pristine.Length));
        Assert.That(DifferingOffsets(pristine, patched), Is.EqualTo(new[] { flagsOffset }));
        Assert.That(File.GetUnixFileMode(path), Is.EqualTo(mode), "file mode kept");
        Assert.That(File.GetLastWriteTimeUtc(path), Is.EqualTo(lastWrite), "timestamp kept, so the SDK's copy step skips the file");
        Assert.That(Directory.GetFiles(dir.Path).Select(Path.GetFileName), Is.EquivalentTo(new[] { "libLibTorchSharp.so", "libLibTorchSharp.so.compat.json" }), "no temp file left");

        using var marker = JsonDocument.Parse(File.ReadAllText(result.MarkerPath));
        Assert.That(marker.RootElement.GetProperty("status").GetString(), Is.EqualTo("applied"));
        Assert.That(marker.RootElement.GetProperty("weakened")[0].GetString(), Is.EqualTo(NativeLibraries.Glibcxx3432));
        Assert.That(marker.RootElement.GetProperty("hostLibStdCxx").GetString(), Is.EqualTo(NativeLibraries.HostLibStdCxx()));
    }

    [Test]
    public void Patching_an_already_patched_library_rewrites_neither_the_library_nor_the_marker()
    {
        NativeLibraries.AssumeHostLacksGlibcxx3432();
        using var dir = new TempDirectory();
        string path = WriteLibrary(dir, NativeLibraries.PristineLibrary(), out _, out _);
        var first = LibStdCxxCompat.PatchFile(path, NativeLibraries.HostLibStdCxx(), DefaultAllowList);
        byte[] bytes = File.ReadAllBytes(path);
        File.SetLastWriteTimeUtc(first.MarkerPath, new DateTime(2020, 1, 1, 0, 0, 0, DateTimeKind.Utc));
        var library = new FileInfo(path);
        var (libraryTime, libraryChange) = (library.LastWriteTimeUtc, StatusChangeTime(path));

        var second = LibStdCxxCompat.PatchFile(path, NativeLibraries.HostLibStdCxx(), DefaultAllowList);

        Assert.That(second.Plan.Status, Is.EqualTo(LibStdCxxCompatStatus.Applied));
        Assert.That(second.LibraryRewritten, Is.False);
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(bytes));
        Assert.That(File.GetLastWriteTimeUtc(path), Is.EqualTo(libraryTime));
        Assert.That(StatusChangeTime(path), Is.EqualTo(libraryChange), "same inode, untouched");
        Assert.That(File.GetLastWriteTimeUtc(second.MarkerPath), Is.EqualTo(new DateTime(2020, 1, 1, 0, 0, 0, DateTimeKind.Utc)));
    }

    [Test]
    public void Refuses_to_weaken_a_version_whose_symbols_are_not_allow_listed()
    {
        NativeLibraries.AssumeHostLacksGlibcxx3432();
        using var dir = new TempDirectory();
        byte[] pristine = NativeLibraries.PristineLibrary();
        string path = WriteLibrary(dir, pristine, out _, out _);

        var result = LibStdCxxCompat.PatchFile(path, NativeLibraries.HostLibStdCxx(), ["_ZSt4cout"]);

        Assert.That(result.Plan.Status, Is.EqualTo(LibStdCxxCompatStatus.Refused));
        Assert.That(result.Plan.Refused.Select(v => v.Name), Is.EqualTo(new[] { NativeLibraries.Glibcxx3432 }));
        Assert.That(result.LibraryRewritten, Is.False);
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(pristine));
        using var marker = JsonDocument.Parse(File.ReadAllText(result.MarkerPath));
        Assert.That(marker.RootElement.GetProperty("status").GetString(), Is.EqualTo("refused"));
    }

    [Test]
    public void Nothing_is_needed_when_the_host_defines_every_required_version()
    {
        // libstdc++ requires nothing from libstdc++, so checking it against itself must come out clean.
        string hostPath = NativeLibraries.HostLibStdCxx();
        var host = ElfSymbolVersions.ReadFile(hostPath);

        var plan = LibStdCxxCompat.Plan(host, host, hostPath, DefaultAllowList);

        Assert.That(plan.Status, Is.EqualTo(LibStdCxxCompatStatus.NotNeeded));
        Assert.That(plan.Missing, Is.Empty);
        Assert.That(LibStdCxxCompat.MarkerJson(plan, "x.so"), Does.Contain("\"status\": \"not-needed\""));
    }

    [Test]
    public void Build_output_differs_from_the_package_file_only_in_the_weak_flag()
    {
        NativeLibraries.AssumeHostLacksGlibcxx3432();
        string? package = NativeLibraries.PackageLibrary();
        Assume.That(package, Is.Not.Null, "TorchSharp package not in the default NuGet cache");
        byte[] original = File.ReadAllBytes(package!);
        byte[] output = File.ReadAllBytes(NativeLibraries.OutputLibrary);

        long flagsOffset = ElfSymbolVersions.Read(original).Requirements.Single(r => r.Name == NativeLibraries.Glibcxx3432).FlagsOffset;
        Assert.That(DifferingOffsets(original, output), Is.EqualTo(new[] { flagsOffset }));
        Assert.That(File.Exists(NativeLibraries.OutputLibrary + LibStdCxxCompat.MarkerSuffix), Is.True);
    }

    [TestCase(new byte[] { 1, 2, 3 })]
    [TestCase(new byte[] { 0x7f, (byte)'E', (byte)'L', (byte)'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 })]
    public void Rejects_images_that_are_not_ELF64_little_endian(byte[] image)
    {
        Assert.Throws<ElfFormatException>(() => ElfSymbolVersions.Read(image));
    }

    [Test]
    public void Rejects_a_truncated_library_instead_of_reading_past_its_end()
    {
        byte[] truncated = NativeLibraries.PristineLibrary()[..300_000];
        Assert.Throws<ElfFormatException>(() => ElfSymbolVersions.Read(truncated));
    }

    private static string WriteLibrary(TempDirectory dir, byte[] bytes, out UnixFileMode mode, out DateTime lastWrite)
    {
        string path = dir.File("libLibTorchSharp.so");
        File.WriteAllBytes(path, bytes);
        mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
        File.SetUnixFileMode(path, mode);
        lastWrite = new DateTime(2026, 5, 7, 10, 3, 28, DateTimeKind.Utc);
        File.SetLastWriteTimeUtc(path, lastWrite);
        return path;
    }

    private static long[] DifferingOffsets(byte[] a, byte[] b) =>
        Enumerable.Range(0, Math.Min(a.Length, b.Length)).Where(i => a[i] != b[i]).Select(i => (long)i).ToArray();

    // ctime changes on any write or rename over the path, unlike mtime which the patch deliberately restores.
    private static string StatusChangeTime(string path)
    {
        var stat = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("stat", ["-c", "%i %Z.%z", path]) { RedirectStandardOutput = true })!;
        string output = stat.StandardOutput.ReadToEnd();
        stat.WaitForExit();
        return output.Trim();
    }
}
