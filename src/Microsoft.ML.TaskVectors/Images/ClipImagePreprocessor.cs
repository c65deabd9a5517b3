using Microsoft.ML.TaskVectors.Models;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Images;

/// <summary>
/// CLIP's evaluation preprocessing, as OpenAI's <c>clip.load</c> and open_clip build it with
/// torchvision: resize the shorter side to the input size (bicubic, PIL's filter), centre crop a
/// square, scale to [0, 1], subtract the mean and divide by the standard deviation per channel.
/// The output is channel-major (CHW) floats, ready for a vision transformer.
/// </summary>
/// <remarks>
/// Hugging Face's <c>CLIPImageProcessor</c> rounds the resized size and the crop offsets slightly
/// differently; this class follows torchvision (see <see cref="ResizedSize"/> and <see cref="CenterCropOffset"/>).
/// </remarks>
public sealed class ClipImagePreprocessor
{
    // value → normalised value, one table per channel: the same float operations as torchvision's
    // ToTensor (x / 255) and Normalize ((x − mean) / std), done once per byte value.
    private readonly float[][] _tables;

    /// <summary>Creates a preprocessor; <paramref name="options"/> defaults to CLIP's (224 pixels, CLIP mean and std).</summary>
    public ClipImagePreprocessor(ClipImagePreprocessorOptions? options = null)
    {
        Options = options ?? new ClipImagePreprocessorOptions();
        Options.Validate();
        _tables = new float[3][];
        for (var c = 0; c < 3; c++)
        {
            var table = new float[256];
            for (var v = 0; v < 256; v++) table[v] = (v / 255f - Options.Mean[c]) / Options.Std[c];
            _tables[c] = table;
        }
    }

    /// <summary>A preprocessor for a vision tower's input size, with CLIP's mean and std.</summary>
    public static ClipImagePreprocessor For(ClipVisionConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return new ClipImagePreprocessor(new ClipImagePreprocessorOptions { ImageSize = config.ImageSize });
    }

    /// <summary>The options in use.</summary>
    public ClipImagePreprocessorOptions Options { get; }

    /// <summary>Output height and width in pixels.</summary>
    public int ImageSize => Options.ImageSize;

    /// <summary>Floats per preprocessed image: 3 · size · size.</summary>
    public int ValuesPerImage => 3 * ImageSize * ImageSize;

    /// <summary>
    /// The size torchvision's <c>Resize(size)</c> gives a <paramref name="width"/> × <paramref name="height"/>
    /// image: the shorter side becomes <paramref name="size"/>, the longer side <c>⌊size · long / short⌋</c>.
    /// </summary>
    public static (int Width, int Height) ResizedSize(int width, int height, int size)
    {
        if (width <= 0 || height <= 0 || size <= 0)
            throw new ArgumentOutOfRangeException(nameof(size), $"Sizes must be positive; got {width}×{height} → {size}.");
        var (shorter, longer) = width <= height ? (width, height) : (height, width);
        var newLonger = (int)((double)size * longer / shorter);
        return width <= height ? (size, newLonger) : (newLonger, size);
    }

    /// <summary>
    /// The top-left corner of torchvision's <c>CenterCrop(size)</c>: <c>round((w − size) / 2)</c> and
    /// <c>round((h − size) / 2)</c>, rounding halves to even as Python does.
    /// </summary>
    public static (int Left, int Top) CenterCropOffset(int width, int height, int size) =>
        ((int)Math.Round((width - size) / 2.0, MidpointRounding.ToEven),
         (int)Math.Round((height - size) / 2.0, MidpointRounding.ToEven));

    /// <summary>
    /// torchvision's <c>CenterCrop(size)</c>: the centred <paramref name="size"/> × <paramref name="size"/>
    /// square; a smaller image is first padded with black as torchvision does.
    /// </summary>
    public static RgbImage CenterCrop(RgbImage image, int size)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (size <= 0) throw new ArgumentOutOfRangeException(nameof(size), $"Crop size must be positive; got {size}.");
        if (image.Width < size || image.Height < size) image = PadForCrop(image, size);
        var (left, top) = CenterCropOffset(image.Width, image.Height, size);
        return image.Crop(left, top, size, size);
    }

    /// <summary>The 8-bit square image the model sees: resize (shorter side) then centre crop.</summary>
    public RgbImage ResizeAndCrop(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        var (w, h) = ResizedSize(image.Width, image.Height, ImageSize);
        var resized = w == image.Width && h == image.Height ? image : BicubicResampler.Resize(image, w, h);
        return CenterCrop(resized, ImageSize);
    }

    /// <summary>Preprocesses one image into a new array of <see cref="ValuesPerImage"/> floats (CHW).</summary>
    public float[] Process(RgbImage image)
    {
        var output = new float[ValuesPerImage];
        Process(image, output);
        return output;
    }

    /// <summary>Preprocesses one image into <paramref name="destination"/> (CHW, <see cref="ValuesPerImage"/> floats).</summary>
    public void Process(RgbImage image, Span<float> destination) => Normalize(ResizeAndCrop(image), destination);

    /// <summary>
    /// Scales and normalises an image that already has the model's size into CHW floats: channel c of
    /// pixel (x, y) goes to <c>destination[(c · size + y) · size + x]</c>.
    /// </summary>
    public void Normalize(RgbImage squareImage, Span<float> destination)
    {
        ArgumentNullException.ThrowIfNull(squareImage);
        if (squareImage.Width != ImageSize || squareImage.Height != ImageSize)
            throw new ArgumentException(
                $"Expected a {ImageSize}×{ImageSize} image; got {squareImage.Width}×{squareImage.Height}.", nameof(squareImage));
        if (destination.Length < ValuesPerImage)
            throw new ArgumentException($"The destination holds {destination.Length} floats; one image needs {ValuesPerImage}.", nameof(destination));
        var plane = ImageSize * ImageSize;
        var pixels = squareImage.Pixels;
        for (var c = 0; c < 3; c++)
        {
            var table = _tables[c];
            var channel = destination.Slice(c * plane, plane);
            for (var i = 0; i < plane; i++) channel[i] = table[pixels[3 * i + c]];
        }
    }

    /// <summary>Preprocesses a batch into a new array [B, 3, size, size] (row-major).</summary>
    public float[] ProcessBatch(IReadOnlyList<RgbImage> images)
    {
        ArgumentNullException.ThrowIfNull(images);
        var output = new float[checked(images.Count * ValuesPerImage)];
        ProcessBatch(images, output);
        return output;
    }

    /// <summary>
    /// Preprocesses a batch into <paramref name="destination"/>, image i at offset i · <see cref="ValuesPerImage"/>;
    /// images are processed in parallel.
    /// </summary>
    public void ProcessBatch(IReadOnlyList<RgbImage> images, float[] destination)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(destination);
        var per = ValuesPerImage;
        if (destination.LongLength < (long)images.Count * per)
            throw new ArgumentException($"The destination holds {destination.LongLength} floats; {images.Count} images need {(long)images.Count * per}.", nameof(destination));
        Parallel.For(0, images.Count, i => Process(images[i], destination.AsSpan(i * per, per)));
    }

    /// <summary>Preprocesses a batch into a new float32 CPU tensor [B, 3, size, size].</summary>
    public torch.Tensor ToTensor(IReadOnlyList<RgbImage> images)
    {
        var data = ProcessBatch(images);
        return torch.tensor(data, [images.Count, 3, ImageSize, ImageSize]);
    }

    private static RgbImage PadForCrop(RgbImage image, int size)
    {
        // torchvision pads left/top by ⌊d/2⌋ and right/bottom by ⌈d/2⌉ where the image is short by d.
        var padLeft = Math.Max(size - image.Width, 0) / 2;
        var padTop = Math.Max(size - image.Height, 0) / 2;
        var width = Math.Max(size, image.Width);
        var height = Math.Max(size, image.Height);
        var pixels = new byte[width * height * 3];
        for (var y = 0; y < image.Height; y++)
            image.Pixels.AsSpan(y * image.Width * 3, image.Width * 3).CopyTo(pixels.AsSpan(((y + padTop) * width + padLeft) * 3));
        return new RgbImage(width, height, pixels);
    }
}
