using System.Text.Json;
using Microsoft.ML.TaskVectors.Runtime;

namespace Microsoft.ML.TaskVectors.Tests.Runtime;

public class EnvironmentReportTests
{
    [Test]
    public void Every_field_is_filled_in_when_all_components_load()
    {
        var report = EnvironmentReport.Collect();

        var strings = typeof(EnvironmentReport).GetProperties()
            .Where(p => p.PropertyType == typeof(string) && !p.Name.EndsWith("Error", StringComparison.Ordinal))
            .ToDictionary(p => p.Name, p => (string?)p.GetValue(report));
        Assert.That(strings, Has.Count.GreaterThanOrEqualTo(7));
        Assert.Multiple(() =>
        {
            foreach (var (name, value) in strings)
                Assert.That(value, Is.Not.Null.And.Not.Empty.And.Not.StartWith("unavailable"), name);
            Assert.That(report.TorchSharpLoaded, Is.True, report.TorchSharpError);
            Assert.That(report.OnnxRuntimeLoaded, Is.True, report.OnnxRuntimeError);
            Assert.That(report.TorchSharpError, Is.Null);
            Assert.That(report.OnnxRuntimeError, Is.Null);
            Assert.That(report.TorchCudaAvailable, Is.Not.Null);
            Assert.That(report.TorchCudaDeviceCount, Is.GreaterThanOrEqualTo(0));
            Assert.That(report.TorchThreads, Is.GreaterThan(0));
            Assert.That(report.ProcessorCount, Is.EqualTo(Environment.ProcessorCount));
            Assert.That(report.OnnxRuntimeExecutionProviders, Does.Contain("CPUExecutionProvider"));
            Assert.That(report.OnnxRuntimeCudaAvailable, Is.EqualTo(report.OnnxRuntimeExecutionProviders.Contains("CUDAExecutionProvider")));
            Assert.That(report.LibStdCxxCompatibility.Summary, Is.Not.Empty);
            Assert.That(report.ToDisplayRows().Select(r => r.Value), Has.All.Not.Empty);
        });
    }

    [Test]
    public void Reports_the_compatibility_step_as_applied_on_a_host_without_GLIBCXX_3_4_32()
    {
        NativeLibraries.AssumeHostLacksGlibcxx3432();

        var step = EnvironmentReport.Collect().LibStdCxxCompatibility;

        Assert.That(step.State, Is.EqualTo(CompatibilityStepState.Applied));
        Assert.That(step.Summary, Is.EqualTo("applied: GLIBCXX_3.4.32 weakened"));
        Assert.That(step.WeakenedVersions, Is.EqualTo(new[] { NativeLibraries.Glibcxx3432 }));
        Assert.That(step.Library, Is.EqualTo(NativeLibraries.OutputLibrary), "the report describes the library this process loaded");
        Assert.That(step.HostLibStdCxx, Does.Contain("libstdc++.so.6"));
    }

    [TestCase("always [madvise] never\n", "madvise (the merge's large buffers use them)")]
    [TestCase("[always] madvise never", "always (the merge's large buffers use them)")]
    [TestCase("always madvise [never]", "never (the merge's large buffers use 4 KB pages: slower on virtual machines)")]
    [TestCase(null, "not on this system (the merge's large buffers use ordinary pages)")]
    public void Reports_the_transparent_huge_page_mode_the_kernel_selected(string? modeFile, string expected)
    {
        Assert.That(HugePageMemory.Describe(modeFile), Is.EqualTo(expected));
        Assert.That(EnvironmentReport.Collect().ToDisplayRows().Single(r => r.Key == "Transparent huge pages").Value, Is.EqualTo(HugePageMemory.Describe()));
    }

    [Test]
    public void Json_report_is_camel_case_and_names_the_compatibility_state()
    {
        using var json = JsonDocument.Parse(EnvironmentReport.Collect().ToJson());

        var root = json.RootElement;
        Assert.That(root.GetProperty("torchSharpVersion").GetString(), Is.Not.Empty);
        Assert.That(root.GetProperty("onnxRuntimeExecutionProviders").ValueKind, Is.EqualTo(JsonValueKind.Array));
        Assert.That(root.GetProperty("libStdCxxCompatibility").GetProperty("state").ValueKind, Is.EqualTo(JsonValueKind.String));
    }
}
