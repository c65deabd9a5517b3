using Microsoft.ML.TaskVectors.Runtime;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Tests.Runtime;

public class ComputeDeviceTests
{
    [TestCase("cpu")]
    [TestCase(" CPU ")]
    public void Cpu_request_resolves_to_the_cpu(string request)
    {
        Assert.That(ComputeDevice.Resolve(request).type, Is.EqualTo(DeviceType.CPU));
    }

    [TestCase("cuda")]
    [TestCase("cuda:1")]
    [TestCase("auto")]
    [TestCase(null)]
    public void Cuda_or_auto_without_cuda_falls_back_to_the_cpu(string? request)
    {
        AssumeNoCuda();
        Assert.That(ComputeDevice.Resolve(request).type, Is.EqualTo(DeviceType.CPU));
    }

    [TestCase("cuda")]
    [TestCase("CUDA:0")]
    public void Cuda_without_fallback_throws_a_message_naming_the_request(string request)
    {
        AssumeNoCuda();
        var error = Assert.Throws<InvalidOperationException>(() => ComputeDevice.Resolve(request, requireRequested: true));
        Assert.That(error!.Message, Does.Contain("cuda").And.Contain("not available"));
    }

    [Test]
    public void Auto_without_fallback_still_falls_back_because_auto_asks_for_nothing_specific()
    {
        AssumeNoCuda();
        Assert.That(ComputeDevice.Resolve("auto", requireRequested: true).type, Is.EqualTo(DeviceType.CPU));
    }

    [TestCase("tpu")]
    [TestCase("cuda:")]
    [TestCase("cuda:-1")]
    public void Unknown_device_strings_are_rejected(string request)
    {
        var error = Assert.Throws<ArgumentException>(() => ComputeDevice.Resolve(request));
        Assert.That(error!.Message, Does.Contain(request));
    }

    private static void AssumeNoCuda() =>
        Assume.That(ComputeDevice.IsCudaAvailable(), Is.False, "CUDA is available on this machine.");
}
