using Microsoft.ML.TaskVectors.Composition;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Composition;

public class PerSampleKernelsTests
{
    /// <summary>y_b = x_b·W_bᵀ with W_b = Σr mixing[b,r]·stack[r], and its gradients, by float64 autograd.</summary>
    private static (Tensor Y, Tensor GradX, Tensor GradMixing) Reference(Tensor x, Tensor mixing, Tensor stack, Tensor gradOutput, long outFeatures, long inFeatures)
    {
        var x64 = x.to(float64).requires_grad_();
        var m64 = mixing.to(float64).requires_grad_();
        var w = m64.mm(stack.to(float64)).view(x.shape[0], outFeatures, inFeatures);
        var y = x64.bmm(w.transpose(1, 2));
        (y * gradOutput.to(float64)).sum().backward();
        return (y.detach(), x64.grad!, m64.grad!);
    }

    // Shapes off every block size: tokens not a multiple of 8 or 56, rows not of 3 or 24, columns spanning
    // several chunks and not a multiple of 8, samples not a multiple of 4, stack rows not a multiple of 3.
    [TestCase(6, 5, 50, 777, 5, false)]
    [TestCase(6, 5, 50, 777, 5, true)]
    [TestCase(1, 1, 1, 1, 1, false)]
    [TestCase(1, 1, 1, 1, 1, true)]
    [TestCase(4, 57, 24, 48, 9, false)]
    [TestCase(4, 65, 24, 48, 9, true)]
    [TestCase(9, 50, 73, 30, 4, false)]
    [TestCase(9, 50, 73, 30, 4, true)]
    [TestCase(9, 7, 30, 100, 4, true, 1L)] // one formation group of samples per pass over the stack
    [TestCase(10, 7, 30, 100, 4, false, 60_000L)]
    public void FusedKernelsEqualAFloat64Reference(int batch, int tokens, int outFeatures, int inFeatures, int r, bool wide, long groupBytes = 4L << 20)
    {
        Assume.That(PerSampleKernels.IsSupported, "the CPU has no AVX2/FMA");
        Assume.That(!wide || PerSampleKernels.WideByDefault, "the CPU has no AVX-512");
        using var scope = NewDisposeScope();
        var gen = new Generator(21);
        var x = randn(batch, tokens, inFeatures, generator: gen);
        var mixing = randn(batch, r, generator: gen);
        var stack = randn(r, (long)outFeatures * inFeatures, generator: gen);
        var gradOutput = randn(batch, tokens, outFeatures, generator: gen);

        var y = PerSampleKernels.Forward(x, mixing, stack, outFeatures, inFeatures, wide, groupBytes);
        var (gradX, gradMixing) = PerSampleKernels.Backward(x, mixing, stack, gradOutput, outFeatures, inFeatures, wide, groupBytes);
        var expected = Reference(x, mixing, stack, gradOutput, outFeatures, inFeatures);

        Assert.That(y.shape, Is.EqualTo(new long[] { batch, tokens, outFeatures }));
        Assert.That(gradX.shape, Is.EqualTo(x.shape));
        Assert.That(gradMixing.shape, Is.EqualTo(mixing.shape));
        double scale = Math.Sqrt(inFeatures * r) + 1;
        AssertClose(y, expected.Y, 1e-5 * scale);
        AssertClose(gradX, expected.GradX, 1e-5 * Math.Sqrt(outFeatures * r + 1));
        AssertClose(gradMixing, expected.GradMixing, 1e-5 * Math.Sqrt((double)tokens * outFeatures * inFeatures));
    }

    [Test]
    public void OneThreadGivesTheSameResultWithinRounding()
    {
        Assume.That(PerSampleKernels.IsSupported, "the CPU has no AVX2/FMA");
        using var scope = NewDisposeScope();
        var gen = new Generator(8);
        var (x, mixing, stack, gy) = (randn(5, 9, 800, generator: gen), randn(5, 4, generator: gen), randn(4, 70 * 800, generator: gen), randn(5, 9, 70, generator: gen));
        var expected = Reference(x, mixing, stack, gy, 70, 800);
        int before = get_num_threads();
        try
        {
            set_num_threads(1);
            AssertClose(PerSampleKernels.Forward(x, mixing, stack, 70, 800), expected.Y, 1e-3);
            var (gradX, gradMixing) = PerSampleKernels.Backward(x, mixing, stack, gy, 70, 800);
            AssertClose(gradX, expected.GradX, 1e-3);
            AssertClose(gradMixing, expected.GradMixing, 1e-2);
        }
        finally
        {
            set_num_threads(before);
        }
    }

    [Test]
    public void RepeatedRunsAreBitForBitIdentical()
    {
        Assume.That(PerSampleKernels.IsSupported, "the CPU has no AVX2/FMA");
        using var scope = NewDisposeScope();
        var gen = new Generator(3);
        var (x, mixing, stack, gy) = (randn(5, 7, 100, generator: gen), randn(5, 4, generator: gen), randn(4, 60 * 100, generator: gen), randn(5, 7, 60, generator: gen));
        var first = PerSampleKernels.Backward(x, mixing, stack, gy, 60, 100);
        var second = PerSampleKernels.Backward(x, mixing, stack, gy, 60, 100);
        static bool Same(Tensor a, Tensor b) => a.eq(b).all().item<bool>();
        Assert.That(Same(first.GradMixing, second.GradMixing), Is.True);
        Assert.That(Same(first.GradX, second.GradX), Is.True);
        Assert.That(Same(PerSampleKernels.Forward(x, mixing, stack, 60, 100), PerSampleKernels.Forward(x, mixing, stack, 60, 100)), Is.True);
    }

    private static void AssertClose(Tensor actual, Tensor expected, double tolerance)
    {
        double worst = (actual.to(float64) - expected).abs().max().item<double>();
        Assert.That(worst, Is.LessThanOrEqualTo(tolerance), $"max |difference| {worst}");
    }
}
