using Microsoft.ML.TaskVectors.Images;

namespace Microsoft.ML.TaskVectors.Tests.Images;

public class BicubicResamplerTests
{
    /// <summary>
    /// A slow, direct statement of PIL's 8-bit bicubic resize, written apart from the library: every
    /// output pixel is computed on its own from the weights of every input pixel (no windows, no pass
    /// buffers). The weight of input i for output o is the cubic at (i + ½ − centre) / max(scale, 1),
    /// centre = (o + ½)·scale, normalised over the image, then fixed to 22 bits; the horizontal sum is
    /// rounded to 8 bits before the vertical sum uses it.
    /// </summary>
    internal static class ReferenceResize
    {
        private const int Bits = 22;

        private static double Cubic(double t)
        {
            // Keys (1981) with a = −0.5, in the textbook polynomial form.
            const double a = -0.5;
            t = Math.Abs(t);
            if (t < 1) return (a + 2) * t * t * t - (a + 3) * t * t + 1;
            if (t < 2) return a * t * t * t - 5 * a * t * t + 8 * a * t - 4 * a;
            return 0;
        }

        /// <summary>Fixed-point weights [outSize][inSize].</summary>
        public static int[][] Weights(int inSize, int outSize)
        {
            var scale = (double)inSize / outSize;
            var stretch = Math.Max(scale, 1.0);
            var result = new int[outSize][];
            for (var o = 0; o < outSize; o++)
            {
                var centre = (o + 0.5) * scale;
                var raw = Enumerable.Range(0, inSize).Select(i => Cubic((i + 0.5 - centre) / stretch)).ToArray();
                var total = 0.0;
                foreach (var w in raw) total += w; // in index order, like any sequential sum
                result[o] = raw.Select(w => (int)Math.Round(w / total * (1 << Bits), MidpointRounding.AwayFromZero)).ToArray();
            }
            return result;
        }

        private static int ToByte(long acc) => (int)Math.Clamp((acc + (1L << (Bits - 1))) >> Bits, 0, 255);

        public static byte[] Resize(byte[] hwc, int width, int height, int outWidth, int outHeight)
        {
            var wx = width == outWidth ? null : Weights(width, outWidth);
            var wy = height == outHeight ? null : Weights(height, outHeight);
            int Horizontal(int x, int y, int c) => wx is null
                ? hwc[(y * width + x) * 3 + c]
                : ToByte(Enumerable.Range(0, width).Sum(i => (long)wx[x][i] * hwc[(y * width + i) * 3 + c]));
            var output = new byte[outWidth * outHeight * 3];
            for (var y = 0; y < outHeight; y++)
                for (var x = 0; x < outWidth; x++)
                    for (var c = 0; c < 3; c++)
                        output[(y * outWidth + x) * 3 + c] = (byte)(wy is null
                            ? Horizontal(x, y, c)
                            : ToByte(Enumerable.Range(0, height).Sum(j => (long)wy[y][j] * Horizontal(x, j, c))));
            return output;
        }
    }

    private static RgbImage GreyRow(params byte[] values) => RgbImage.FromGrey(values.Length, 1, values);

    private static byte[] Red(RgbImage image) => Enumerable.Range(0, image.Width * image.Height).Select(i => image.Pixels[3 * i]).ToArray();

    [Test]
    public void HalvingAStepMatchesHandComputedWeights()
    {
        // 4 → 2: scale 2, support 4. Output 0 has centre 1 and weights ∝ k(¼), k(¼), k(¾), k(1¼) =
        // 0.8671875, 0.8671875, 0.2265625, −0.0703125 (sum 1.890625), so 255·0.15625/1.890625 = 21.07 → 21;
        // output 1 mirrors it: 255 − 21.07 = 233.93 → 234.
        var output = BicubicResampler.Resize(GreyRow(0, 0, 255, 255), 2, 1);
        Assert.That(Red(output), Is.EqualTo(new byte[] { 21, 234 }));
    }

    [Test]
    public void DoublingAStepMatchesHandComputedWeights()
    {
        // 2 → 4: scale ½, support 2. Output 0: centre ¼, weights k(¼) = 0.8671875 and k(1¼) = −0.0703125
        // → 255·(−0.0882) < 0 → 0. Output 1: centre ¾, k(¼) and k(¾) = 0.2265625 → 255·0.2071 = 52.8 → 53.
        // Outputs 2 and 3 mirror them: 202 and 255 (clamped from 277.5).
        var output = BicubicResampler.Resize(GreyRow(0, 255), 4, 1);
        Assert.That(Red(output), Is.EqualTo(new byte[] { 0, 53, 202, 255 }));
    }

    [Test]
    public void KernelHasKeysShape()
    {
        Assert.That(BicubicResampler.Kernel(0), Is.EqualTo(1.0));
        Assert.That(BicubicResampler.Kernel(1), Is.EqualTo(0.0));
        Assert.That(BicubicResampler.Kernel(2), Is.EqualTo(0.0));
        Assert.That(BicubicResampler.Kernel(0.5), Is.EqualTo(0.5625));
        Assert.That(BicubicResampler.Kernel(-1.5), Is.EqualTo(-0.0625));
    }

    [TestCase(9, 7, 224, 224)]
    [TestCase(300, 200, 224, 149)]
    [TestCase(50, 50, 7, 13)]
    public void ConstantImageStaysConstant(int w, int h, int outW, int outH)
    {
        var output = BicubicResampler.Resize(RgbImage.Filled(w, h, 17, 128, 250), outW, outH);
        Assert.That((output.Width, output.Height), Is.EqualTo((outW, outH)));
        Assert.That(output.Pixels, Is.EqualTo(RgbImage.Filled(outW, outH, 17, 128, 250).Pixels));
    }

    [TestCase(23, 17, 224, 165)]   // upscale both ways
    [TestCase(97, 61, 31, 19)]     // downscale (antialiasing kernel wider than 4 taps)
    [TestCase(40, 30, 40, 11)]     // vertical only
    [TestCase(33, 12, 8, 12)]      // horizontal only
    [TestCase(64, 16, 13, 48)]     // down one way, up the other
    public void MatchesTheDirectReference(int w, int h, int outW, int outH)
    {
        var image = RgbImageTests.RandomImage(w, h, seed: w * 1000 + h);
        var output = BicubicResampler.Resize(image, outW, outH);
        Assert.That(output.Pixels, Is.EqualTo(ReferenceResize.Resize(image.Pixels, w, h, outW, outH)));
    }

    [Test]
    public void MatchesPillowOnAGreyPattern()
    {
        // Pillow 9.4: Image.fromarray(v, "L").resize(size, Image.BICUBIC) of the 7×5 image v = (37x + 91y) mod 256.
        var grey = new byte[35];
        for (var y = 0; y < 5; y++)
            for (var x = 0; x < 7; x++) grey[y * 7 + x] = (byte)((37 * x + 91 * y) % 256);
        var image = RgbImage.FromGrey(7, 5, grey);
        Assert.That(Red(image.ResizeBicubic(3, 2)), Is.EqualTo(new byte[] { 95, 130, 133, 110, 116, 126 }));
        Assert.That(Red(image.ResizeBicubic(7, 3)), Is.EqualTo(new byte[]
        {
            40, 77, 114, 151, 188, 111, 148, 128, 165, 54, 91, 137, 111, 148, 68, 105, 142, 179, 66, 111, 148,
        }));
        Assert.That(Red(image.ResizeBicubic(4, 5)), Is.EqualTo(new byte[]
        {
            15, 77, 145, 207, 106, 174, 193, 40, 199, 46, 65, 133, 32, 94, 162, 224, 123, 195, 68, 49,
        }));
        Assert.That(Red(image.ResizeBicubic(10, 8)), Is.EqualTo(new byte[]
        {
            0, 10, 39, 65, 91, 117, 144, 184, 218, 236, 31, 47, 80, 116, 143, 173, 191, 129, 128, 154,
            95, 115, 141, 160, 185, 221, 230, 61, 22, 58, 170, 203, 177, 45, 57, 94, 115, 81, 89, 113,
            139, 171, 145, 13, 25, 62, 95, 135, 169, 187, 19, 38, 65, 83, 108, 137, 168, 194, 223, 242,
            62, 80, 112, 148, 187, 152, 71, 94, 127, 146, 113, 132, 161, 187, 233, 152, 0, 10, 45, 64,
        }));
    }

    [Test]
    public void SameSizeIsACopy()
    {
        var image = RgbImageTests.RandomImage(5, 4, seed: 9);
        var output = BicubicResampler.Resize(image, 5, 4);
        Assert.That(output.Pixels, Is.EqualTo(image.Pixels));
        Assert.That(output.Pixels, Is.Not.SameAs(image.Pixels));
    }

    [Test]
    public void ResizingEachChannelIsIndependent()
    {
        // Resizing a grey image then expanding equals expanding then resizing (PIL's "L" then convert("RGB")).
        var grey = new byte[19 * 11];
        new Random(5).NextBytes(grey);
        var viaRgb = RgbImage.FromGrey(19, 11, grey).ResizeBicubic(30, 7);
        var r = Red(viaRgb);
        Assert.That(viaRgb.Pixels.Where((_, i) => i % 3 == 1), Is.EqualTo(r));
        Assert.That(viaRgb.Pixels.Where((_, i) => i % 3 == 2), Is.EqualTo(r));
    }
}
