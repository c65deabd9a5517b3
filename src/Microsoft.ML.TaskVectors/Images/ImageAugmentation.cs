namespace Microsoft.ML.TaskVectors.Images;

/// <summary>
/// Training augmentation in torchvision's manner, seeded: <c>RandomResizedCrop</c> to the model size
/// (bicubic, <see cref="BicubicResampler"/>), <c>RandomHorizontalFlip</c>, then <c>ColorJitter</c>, then
/// CLIP's scaling and normalisation. The output has <see cref="ClipImagePreprocessor"/>'s layout
/// (CHW floats). The same <see cref="Random"/> state (or seed) gives the same pixels.
/// </summary>
/// <remarks>
/// Random draws per image, in order: up to ten (area scale, log aspect ratio) pairs and the crop
/// position, one flip draw, then — only when some jitter is on — a permutation of the four colour
/// operations and one factor for each operation that is on (brightness, contrast, saturation, hue).
/// Colour jitter works on floats in [0, 1] as torchvision does on tensors, clamping after each
/// operation, so unlike PIL-based jitter no rounding to 8 bits happens between operations.
/// </remarks>
public sealed class ImageAugmentation
{
    private const int Attempts = 10;
    private readonly ClipImagePreprocessor _preprocessor;

    /// <summary>Creates an augmentation; <paramref name="options"/> defaults to <see cref="ImageAugmentationOptions"/>'s defaults.</summary>
    public ImageAugmentation(ImageAugmentationOptions? options = null)
    {
        Options = options ?? new ImageAugmentationOptions();
        Options.Validate();
        _preprocessor = new ClipImagePreprocessor(Options.Preprocessing);
    }

    /// <summary>The options in use.</summary>
    public ImageAugmentationOptions Options { get; }

    /// <summary>Output height and width in pixels.</summary>
    public int ImageSize => _preprocessor.ImageSize;

    /// <summary>Floats per augmented image: 3 · size · size.</summary>
    public int ValuesPerImage => _preprocessor.ValuesPerImage;

    /// <summary>
    /// torchvision's <c>RandomResizedCrop.get_params</c>: up to ten tries of an area fraction drawn uniformly
    /// from [<paramref name="minScale"/>, <paramref name="maxScale"/>] and an aspect ratio drawn log-uniformly
    /// from [<paramref name="minRatio"/>, <paramref name="maxRatio"/>], the first that fits placed uniformly;
    /// otherwise the centred crop of the whole image clamped to the ratio range.
    /// </summary>
    public static (int Left, int Top, int Width, int Height) RandomResizedCropBox(
        int width, int height, Random random, double minScale = 0.08, double maxScale = 1.0,
        double minRatio = 3.0 / 4.0, double maxRatio = 4.0 / 3.0)
    {
        ArgumentNullException.ThrowIfNull(random);
        if (width <= 0 || height <= 0) throw new ArgumentOutOfRangeException(nameof(width), $"Image size must be positive; got {width}×{height}.");
        var area = (double)width * height;
        var logMin = Math.Log(minRatio);
        var logMax = Math.Log(maxRatio);
        for (var attempt = 0; attempt < Attempts; attempt++)
        {
            var targetArea = area * Uniform(random, minScale, maxScale);
            var aspect = Math.Exp(Uniform(random, logMin, logMax));
            var w = (int)Math.Round(Math.Sqrt(targetArea * aspect), MidpointRounding.ToEven);
            var h = (int)Math.Round(Math.Sqrt(targetArea / aspect), MidpointRounding.ToEven);
            if (w > 0 && w <= width && h > 0 && h <= height)
            {
                var top = random.Next(0, height - h + 1);
                var left = random.Next(0, width - w + 1);
                return (left, top, w, h);
            }
        }

        // Fallback: the whole image, cut to the nearest allowed aspect ratio, centred.
        int cw, ch;
        var inRatio = (double)width / height;
        if (inRatio < minRatio)
        {
            cw = width;
            ch = (int)Math.Round(cw / minRatio, MidpointRounding.ToEven);
        }
        else if (inRatio > maxRatio)
        {
            ch = height;
            cw = (int)Math.Round(ch * maxRatio, MidpointRounding.ToEven);
        }
        else
        {
            cw = width;
            ch = height;
        }
        cw = Math.Clamp(cw, 1, width);
        ch = Math.Clamp(ch, 1, height);
        return ((width - cw) / 2, (height - ch) / 2, cw, ch);
    }

    /// <summary>Draws the random choices for one <paramref name="width"/> × <paramref name="height"/> image.</summary>
    public AugmentationParameters SampleParameters(int width, int height, Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        var o = Options;
        var (left, top, w, h) = RandomResizedCropBox(width, height, random, o.MinScale, o.MaxScale, o.MinRatio, o.MaxRatio);
        var flip = random.NextDouble() < o.FlipProbability;

        var steps = new List<ColorJitterStep>(4);
        if (o.Brightness > 0 || o.Contrast > 0 || o.Saturation > 0 || o.Hue > 0)
        {
            var order = new[] { ColorJitterKind.Brightness, ColorJitterKind.Contrast, ColorJitterKind.Saturation, ColorJitterKind.Hue };
            for (var i = order.Length - 1; i > 0; i--)
            {
                var j = random.Next(i + 1);
                (order[i], order[j]) = (order[j], order[i]);
            }
            // Factors are drawn in a fixed order, then applied in the shuffled order (as torchvision).
            var factors = new float?[4];
            if (o.Brightness > 0) factors[0] = (float)Uniform(random, Math.Max(0, 1 - o.Brightness), 1 + o.Brightness);
            if (o.Contrast > 0) factors[1] = (float)Uniform(random, Math.Max(0, 1 - o.Contrast), 1 + o.Contrast);
            if (o.Saturation > 0) factors[2] = (float)Uniform(random, Math.Max(0, 1 - o.Saturation), 1 + o.Saturation);
            if (o.Hue > 0) factors[3] = (float)Uniform(random, -o.Hue, o.Hue);
            foreach (var kind in order)
                if (factors[(int)kind] is { } f) steps.Add(new ColorJitterStep(kind, f));
        }
        return new AugmentationParameters(left, top, w, h, flip, steps);
    }

    /// <summary>Augments one image with choices drawn from <paramref name="random"/>; returns CHW floats.</summary>
    public float[] Apply(RgbImage image, Random random)
    {
        var output = new float[ValuesPerImage];
        Apply(image, random, output);
        return output;
    }

    /// <summary>Augments one image with choices drawn from <c>new Random(<paramref name="seed"/>)</c>.</summary>
    public float[] Apply(RgbImage image, int seed) => Apply(image, new Random(seed));

    /// <summary>Augments one image into <paramref name="destination"/> (CHW, <see cref="ValuesPerImage"/> floats).</summary>
    public void Apply(RgbImage image, Random random, Span<float> destination)
    {
        ArgumentNullException.ThrowIfNull(image);
        Apply(image, SampleParameters(image.Width, image.Height, random), destination);
    }

    /// <summary>Applies given choices to one image (deterministic) into <paramref name="destination"/>.</summary>
    public void Apply(RgbImage image, AugmentationParameters parameters, Span<float> destination)
    {
        var square = CropResizeFlip(image, parameters);
        if (parameters.ColorJitter.Count == 0)
        {
            _preprocessor.Normalize(square, destination);
            return;
        }
        if (destination.Length < ValuesPerImage)
            throw new ArgumentException($"The destination holds {destination.Length} floats; one image needs {ValuesPerImage}.", nameof(destination));
        var plane = ImageSize * ImageSize;
        var pixels = square.Pixels;
        for (var c = 0; c < 3; c++)
            for (var i = 0; i < plane; i++) destination[c * plane + i] = pixels[3 * i + c] / 255f;
        var r = destination.Slice(0, plane);
        var g = destination.Slice(plane, plane);
        var b = destination.Slice(2 * plane, plane);
        foreach (var step in parameters.ColorJitter)
        {
            switch (step.Kind)
            {
                case ColorJitterKind.Brightness: ColorOps.Brightness(r, g, b, step.Factor); break;
                case ColorJitterKind.Contrast: ColorOps.Contrast(r, g, b, step.Factor); break;
                case ColorJitterKind.Saturation: ColorOps.Saturation(r, g, b, step.Factor); break;
                case ColorJitterKind.Hue: ColorOps.Hue(r, g, b, step.Factor); break;
            }
        }
        var mean = Options.Preprocessing.Mean;
        var std = Options.Preprocessing.Std;
        for (var c = 0; c < 3; c++)
        {
            var channel = destination.Slice(c * plane, plane);
            for (var i = 0; i < plane; i++) channel[i] = (channel[i] - mean[c]) / std[c];
        }
    }

    /// <summary>The 8-bit geometric part: crop, bicubic resize to the model size, optional mirror.</summary>
    public RgbImage CropResizeFlip(RgbImage image, AugmentationParameters parameters)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(parameters);
        var crop = image.Crop(parameters.CropLeft, parameters.CropTop, parameters.CropWidth, parameters.CropHeight);
        var resized = crop.Width == ImageSize && crop.Height == ImageSize ? crop : BicubicResampler.Resize(crop, ImageSize, ImageSize);
        return parameters.Flip ? resized.FlipHorizontal() : resized;
    }

    /// <summary>
    /// Augments a batch into <paramref name="destination"/>, image i at offset i · <see cref="ValuesPerImage"/>.
    /// Choices are drawn from <paramref name="random"/> image by image in order (so the result does not
    /// depend on threading); pixels are then computed in parallel.
    /// </summary>
    public void ApplyBatch(IReadOnlyList<RgbImage> images, Random random, float[] destination)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(random);
        ArgumentNullException.ThrowIfNull(destination);
        var per = ValuesPerImage;
        if (destination.LongLength < (long)images.Count * per)
            throw new ArgumentException($"The destination holds {destination.LongLength} floats; {images.Count} images need {(long)images.Count * per}.", nameof(destination));
        var parameters = images.Select(image => SampleParameters(image.Width, image.Height, random)).ToArray();
        Parallel.For(0, images.Count, i => Apply(images[i], parameters[i], destination.AsSpan(i * per, per)));
    }

    private static double Uniform(Random random, double low, double high) => low + (high - low) * random.NextDouble();
}
