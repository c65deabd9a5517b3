using Microsoft.ML.TaskVectors.Runtime;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Tests.Runtime;

public class TorchSharpLoadTests
{
    [Test]
    public void TorchSharp_loads_and_multiplies_3x3_matrices_like_by_hand()
    {
        ComputeDevice.EnsureTorchLoaded();

        using var a = torch.tensor(new double[] { 1, 2, 3, 4, 5, 6, 7, 8, 9 }, new long[] { 3, 3 });
        using var b = torch.tensor(new double[] { 9, 8, 7, 6, 5, 4, 3, 2, 1 }, new long[] { 3, 3 });
        using var product = torch.matmul(a, b);

        Assert.That(product.shape, Is.EqualTo(new long[] { 3, 3 }));
        Assert.That(product.data<double>().ToArray(), Is.EqualTo(new double[]
        {
            30, 24, 18,
            84, 69, 54,
            138, 114, 90,
        }));
    }

    [Test]
    public void Loading_twice_is_harmless()
    {
        ComputeDevice.EnsureTorchLoaded();
        Assert.DoesNotThrow(ComputeDevice.EnsureTorchLoaded);
    }
}
