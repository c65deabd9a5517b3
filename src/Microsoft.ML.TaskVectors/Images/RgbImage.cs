using System.Runtime.InteropServices;
using Microsoft.ML.TaskVectors.Checkpoints;
using SkiaSharp;

namespace Microsoft.ML.TaskVectors.Images;

/// <summary>
/// An 8-bit RGB image: <see cref="Width"/> × <see cref="Height"/> pixels stored row by row, three
/// bytes (R, G, B) per pixel (HWC order). Decodes PNG and JPEG (and the other formats SkiaSharp
/// reads) and saves PNG.
/// </summary>
/// <remarks>
/// Decoding keeps the stored colour values: no ICC colour conversion and no EXIF rotation, as PIL's
/// <c>Image.open(...).convert("RGB")</c>. PNG decodes exactly; JPEG (4:4:4 and 4:2:0) gave the same
/// values as PIL 9.4 in our checks (both decode with libjpeg-turbo). Grey, grey + alpha and palette
/// images become RGB; an alpha channel is dropped, not multiplied in. 16-bit images are reduced to
/// 8 bits (PIL instead clips 16-bit grey to 255).
/// </remarks>
public sealed class RgbImage
{
    /// <summary>Wraps <paramref name="pixels"/> (not copied): <c>width · height · 3</c> bytes, HWC RGB.</summary>
    public RgbImage(int width, int height, byte[] pixels)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        if (width <= 0 || height <= 0)
            throw new ArgumentOutOfRangeException(nameof(width), $"Image size must be positive; got {width}×{height}.");
        if (pixels.LongLength != (long)width * height * 3)
            throw new ArgumentException(
                $"A {width}×{height} RGB image needs {(long)width * height * 3} bytes; got {pixels.LongLength}.", nameof(pixels));
        Width = width;
        Height = height;
        Pixels = pixels;
    }

    /// <summary>Width in pixels.</summary>
    public int Width { get; }

    /// <summary>Height in pixels.</summary>
    public int Height { get; }

    /// <summary>The pixels, row by row, R G B per pixel.</summary>
    public byte[] Pixels { get; }

    /// <summary>The byte offset of pixel (<paramref name="x"/>, <paramref name="y"/>)'s red value.</summary>
    public int Offset(int x, int y) => (y * Width + x) * 3;

    /// <summary>An image of one colour.</summary>
    public static RgbImage Filled(int width, int height, byte r, byte g, byte b)
    {
        var image = new RgbImage(width, height, new byte[checked(width * height * 3)]);
        var p = image.Pixels;
        for (var i = 0; i < p.Length; i += 3)
        {
            p[i] = r;
            p[i + 1] = g;
            p[i + 2] = b;
        }
        return image;
    }

    /// <summary>An RGB image from 8-bit grey values (row by row), each grey value copied to R, G and B.</summary>
    public static RgbImage FromGrey(int width, int height, ReadOnlySpan<byte> grey)
    {
        if (grey.Length != (long)width * height)
            throw new ArgumentException($"A {width}×{height} grey image needs {(long)width * height} bytes; got {grey.Length}.", nameof(grey));
        var pixels = new byte[checked(width * height * 3)];
        for (var i = 0; i < grey.Length; i++)
        {
            var v = grey[i];
            pixels[3 * i] = v;
            pixels[3 * i + 1] = v;
            pixels[3 * i + 2] = v;
        }
        return new RgbImage(width, height, pixels);
    }

    /// <summary>Reads and decodes an image file; a missing, corrupt or unsupported file throws naming it.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not an image SkiaSharp can decode, or is truncated.</exception>
    public static RgbImage Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: image file not found.", path);
        return Decode(File.ReadAllBytes(path), path);
    }

    /// <summary>Decodes an encoded image (PNG, JPEG, …) held in memory.</summary>
    /// <param name="data">The encoded bytes.</param>
    /// <param name="source">Names the data in error messages (a path or an identifier).</param>
    /// <exception cref="InvalidDataException">The data is not an image SkiaSharp can decode, or is truncated.</exception>
    public static RgbImage Decode(ReadOnlySpan<byte> data, string? source = null)
    {
        source ??= "image data";
        if (data.IsEmpty) throw new InvalidDataException($"{source}: the image is empty (0 bytes).");
        using var skData = SKData.CreateCopy(data);
        using var codec = SKCodec.Create(skData)
            ?? throw new InvalidDataException($"{source}: not a supported image (expected PNG or JPEG; the header is not recognised).");
        var info = codec.Info;
        if (info.Width <= 0 || info.Height <= 0)
            throw new InvalidDataException($"{source}: the image has no pixels ({info.Width}×{info.Height}).");
        if ((long)info.Width * info.Height > int.MaxValue / 4)
            throw new InvalidDataException($"{source}: the image is too large ({info.Width}×{info.Height}).");

        // Unpremultiplied RGBA, no colour space: the stored values as they are, alpha kept apart so
        // dropping it leaves the colour untouched. Skia expands grey and palette images to RGBA.
        var target = new SKImageInfo(info.Width, info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var rgba = new byte[target.BytesSize];
        SKCodecResult result;
        unsafe
        {
            fixed (byte* p = rgba) result = codec.GetPixels(target, (IntPtr)p);
        }
        if (result != SKCodecResult.Success)
            throw new InvalidDataException(result == SKCodecResult.IncompleteInput
                ? $"{source}: the image data is truncated or corrupt."
                : $"{source}: the image could not be decoded ({result}).");

        var pixels = new byte[info.Width * info.Height * 3];
        for (int i = 0, j = 0; j < pixels.Length; i += 4, j += 3)
        {
            pixels[j] = rgba[i];
            pixels[j + 1] = rgba[i + 1];
            pixels[j + 2] = rgba[i + 2];
        }
        return new RgbImage(info.Width, info.Height, pixels);
    }

    /// <summary>Saves the image as a PNG file, atomically (readers see the old file or the whole new one).</summary>
    public void Save(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var png = EncodePng();
        AtomicFile.Write(path, stream => stream.Write(png));
    }

    /// <summary>Encodes the image as PNG (lossless, opaque).</summary>
    public byte[] EncodePng()
    {
        var rgba = new byte[Width * Height * 4];
        for (int i = 0, j = 0; j < Pixels.Length; i += 4, j += 3)
        {
            rgba[i] = Pixels[j];
            rgba[i + 1] = Pixels[j + 1];
            rgba[i + 2] = Pixels[j + 2];
            rgba[i + 3] = 255;
        }
        var info = new SKImageInfo(Width, Height, SKColorType.Rgba8888, SKAlphaType.Opaque);
        var handle = GCHandle.Alloc(rgba, GCHandleType.Pinned);
        try
        {
            using var pixmap = new SKPixmap(info, handle.AddrOfPinnedObject(), info.RowBytes);
            using var encoded = pixmap.Encode(SKEncodedImageFormat.Png, 100)
                ?? throw new InvalidOperationException($"SkiaSharp could not encode a {Width}×{Height} image as PNG.");
            return encoded.ToArray();
        }
        finally
        {
            handle.Free();
        }
    }

    /// <summary>The rectangle of <paramref name="width"/> × <paramref name="height"/> pixels whose top-left pixel is (<paramref name="left"/>, <paramref name="top"/>).</summary>
    public RgbImage Crop(int left, int top, int width, int height)
    {
        if (left < 0 || top < 0 || width <= 0 || height <= 0 || left + width > Width || top + height > Height)
            throw new ArgumentOutOfRangeException(nameof(left),
                $"Crop ({left}, {top}) size {width}×{height} is not inside the {Width}×{Height} image.");
        if (left == 0 && top == 0 && width == Width && height == Height) return new RgbImage(Width, Height, (byte[])Pixels.Clone());
        var pixels = new byte[width * height * 3];
        for (var y = 0; y < height; y++)
            Pixels.AsSpan(Offset(left, top + y), width * 3).CopyTo(pixels.AsSpan(y * width * 3));
        return new RgbImage(width, height, pixels);
    }

    /// <summary>The mirror image (left and right swapped).</summary>
    public RgbImage FlipHorizontal()
    {
        var pixels = new byte[Pixels.Length];
        for (var y = 0; y < Height; y++)
        {
            var row = y * Width * 3;
            for (var x = 0; x < Width; x++)
            {
                var from = row + x * 3;
                var to = row + (Width - 1 - x) * 3;
                pixels[to] = Pixels[from];
                pixels[to + 1] = Pixels[from + 1];
                pixels[to + 2] = Pixels[from + 2];
            }
        }
        return new RgbImage(Width, Height, pixels);
    }

    /// <summary>Resizes to <paramref name="width"/> × <paramref name="height"/> with PIL's bicubic filter (see <see cref="BicubicResampler"/>).</summary>
    public RgbImage ResizeBicubic(int width, int height) => BicubicResampler.Resize(this, width, height);
}
