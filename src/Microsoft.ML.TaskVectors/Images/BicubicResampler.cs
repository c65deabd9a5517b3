namespace Microsoft.ML.TaskVectors.Images;

/// <summary>
/// Bicubic resizing that reproduces PIL's <c>Image.resize(size, Image.BICUBIC)</c> on 8-bit RGB
/// images, the resize of CLIP's preprocessing.
/// </summary>
/// <remarks>
/// <para>
/// Separable: a horizontal pass, rounded to 8 bits, then a vertical pass. Each output sample is a
/// weighted sum of the input samples within the filter's support around its centre
/// <c>(i + 0.5)·scale</c>, scale = input size ÷ output size. The kernel is Keys' cubic with a = −0.5
/// and support 2; when shrinking, the kernel is stretched by the scale (support 2·scale) so it
/// averages over every input pixel it covers (antialiasing). Weights are normalised to sum to one,
/// then fixed to 22-bit integers; sums start at one half and are clamped to 0…255, as PIL does.
/// </para>
/// <para>
/// Differences from PIL: none for RGB and grey images (a grey image resized here after conversion to
/// RGB equals PIL's grey resize converted to RGB). PIL resizes RGBA images with premultiplied
/// alpha; <see cref="RgbImage"/> has dropped alpha already, so transparent pixels keep their stored
/// colour here. PIL resizes palette images with nearest neighbour; here they are RGB already.
/// </para>
/// </remarks>
public static class BicubicResampler
{
    // 8 bits for the result, 2 bits of headroom for negative lobes and sums above one.
    private const int PrecisionBits = 32 - 8 - 2;
    private const double Support = 2.0;
    private const double A = -0.5;

    /// <summary>Keys' cubic convolution kernel with a = −0.5 (zero beyond |x| = 2).</summary>
    public static double Kernel(double x)
    {
        if (x < 0) x = -x;
        if (x < 1.0) return ((A + 2.0) * x - (A + 3.0)) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * A;
        return 0.0;
    }

    /// <summary>Resizes <paramref name="source"/> to <paramref name="width"/> × <paramref name="height"/>.</summary>
    public static RgbImage Resize(RgbImage source, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (width <= 0 || height <= 0)
            throw new ArgumentOutOfRangeException(nameof(width), $"Resize target must be positive; got {width}×{height}.");

        var horizontal = width != source.Width ? Weights.Compute(source.Width, width) : null;
        var vertical = height != source.Height ? Weights.Compute(source.Height, height) : null;

        var image = source;
        if (horizontal is not null)
        {
            // Only the rows the vertical pass reads (all of them when there is no vertical pass).
            int first = 0, last = source.Height;
            if (vertical is not null)
            {
                first = vertical.Start[0];
                last = vertical.Start[height - 1] + vertical.Count[height - 1];
            }
            image = ResampleRows(source, horizontal, width, first, last);
            if (vertical is not null && first != 0)
                for (var i = 0; i < height; i++) vertical.Start[i] -= first;
        }
        if (vertical is not null) image = ResampleColumns(image, vertical, height);
        return ReferenceEquals(image, source) ? new RgbImage(source.Width, source.Height, (byte[])source.Pixels.Clone()) : image;
    }

    private static RgbImage ResampleRows(RgbImage input, Weights w, int outWidth, int firstRow, int lastRow)
    {
        var rows = lastRow - firstRow;
        var output = new byte[outWidth * rows * 3];
        var src = input.Pixels;
        var inStride = input.Width * 3;
        for (var y = 0; y < rows; y++)
        {
            var inRow = (y + firstRow) * inStride;
            var outRow = y * outWidth * 3;
            for (var x = 0; x < outWidth; x++)
            {
                var k = x * w.KernelSize;
                var p = inRow + w.Start[x] * 3;
                int r = 1 << (PrecisionBits - 1), g = r, b = r;
                for (var i = 0; i < w.Count[x]; i++, p += 3)
                {
                    var c = w.Fixed[k + i];
                    r += src[p] * c;
                    g += src[p + 1] * c;
                    b += src[p + 2] * c;
                }
                output[outRow + 3 * x] = Clip(r);
                output[outRow + 3 * x + 1] = Clip(g);
                output[outRow + 3 * x + 2] = Clip(b);
            }
        }
        return new RgbImage(outWidth, rows, output);
    }

    private static RgbImage ResampleColumns(RgbImage input, Weights w, int outHeight)
    {
        var stride = input.Width * 3;
        var output = new byte[stride * outHeight];
        var src = input.Pixels;
        for (var y = 0; y < outHeight; y++)
        {
            var k = y * w.KernelSize;
            var start = w.Start[y];
            var count = w.Count[y];
            var outRow = y * stride;
            for (var x = 0; x < stride; x++)
            {
                var sum = 1 << (PrecisionBits - 1);
                var p = start * stride + x;
                for (var i = 0; i < count; i++, p += stride) sum += src[p] * w.Fixed[k + i];
                output[outRow + x] = Clip(sum);
            }
        }
        return new RgbImage(input.Width, outHeight, output);
    }

    private static byte Clip(int sum)
    {
        var v = sum >> PrecisionBits;
        return v <= 0 ? (byte)0 : v >= 255 ? (byte)255 : (byte)v;
    }

    /// <summary>Per output index: the first input index, how many inputs, and their fixed-point weights.</summary>
    private sealed class Weights
    {
        public required int KernelSize { get; init; }
        public required int[] Start { get; init; }
        public required int[] Count { get; init; }
        public required int[] Fixed { get; init; }

        public static Weights Compute(int inSize, int outSize)
        {
            var scale = (double)inSize / outSize;
            var filterScale = Math.Max(scale, 1.0);
            var support = Support * filterScale;
            var kernelSize = (int)Math.Ceiling(support) * 2 + 1;
            var start = new int[outSize];
            var count = new int[outSize];
            var weights = new int[outSize * kernelSize];
            var raw = new double[kernelSize];
            var inverse = 1.0 / filterScale;
            for (var o = 0; o < outSize; o++)
            {
                var centre = (o + 0.5) * scale;
                // Truncation toward zero after adding one half, exactly as PIL rounds the window ends.
                var lo = Math.Max((int)(centre - support + 0.5), 0);
                var hi = Math.Min((int)(centre + support + 0.5), inSize);
                var n = hi - lo;
                var total = 0.0;
                for (var i = 0; i < n; i++)
                {
                    raw[i] = Kernel((i + lo - centre + 0.5) * inverse);
                    total += raw[i];
                }
                for (var i = 0; i < n; i++)
                {
                    var v = total != 0.0 ? raw[i] / total : raw[i];
                    weights[o * kernelSize + i] = v < 0
                        ? (int)(-0.5 + v * (1 << PrecisionBits))
                        : (int)(0.5 + v * (1 << PrecisionBits));
                }
                start[o] = lo;
                count[o] = n;
            }
            return new Weights { KernelSize = kernelSize, Start = start, Count = count, Fixed = weights };
        }
    }
}
