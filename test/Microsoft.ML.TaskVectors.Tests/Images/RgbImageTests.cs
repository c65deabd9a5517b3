using System.Runtime.InteropServices;
using Microsoft.ML.TaskVectors.Images;
using SkiaSharp;

namespace Microsoft.ML.TaskVectors.Tests.Images;

public class RgbImageTests
{
    internal static RgbImage RandomImage(int width, int height, int seed)
    {
        var pixels = new byte[width * height * 3];
        new Random(seed).NextBytes(pixels);
        return new RgbImage(width, height, pixels);
    }

    /// <summary>A smooth colour gradient: JPEG keeps it within a few levels.</summary>
    internal static RgbImage Gradient(int width, int height)
    {
        var image = new RgbImage(width, height, new byte[width * height * 3]);
        for (var y = 0; y < height; y++)
            for (var x = 0; x < width; x++)
            {
                var o = image.Offset(x, y);
                image.Pixels[o] = (byte)(255 * x / (width - 1));
                image.Pixels[o + 1] = (byte)(255 * y / (height - 1));
                image.Pixels[o + 2] = (byte)(128 + 100 * Math.Sin((x + y) / 9.0));
            }
        return image;
    }

    /// <summary>Encodes raw pixels with SkiaSharp, independently of <see cref="RgbImage.EncodePng"/>.</summary>
    internal static byte[] SkiaEncode(int width, int height, SKColorType colorType, SKAlphaType alphaType, byte[] pixels,
        SKEncodedImageFormat format, int quality = 100)
    {
        var info = new SKImageInfo(width, height, colorType, alphaType);
        var handle = GCHandle.Alloc(pixels, GCHandleType.Pinned);
        try
        {
            using var pixmap = new SKPixmap(info, handle.AddrOfPinnedObject(), info.RowBytes);
            using var data = pixmap.Encode(format, quality);
            return data.ToArray();
        }
        finally
        {
            handle.Free();
        }
    }

    internal static byte[] ToRgba(RgbImage image, Func<int, byte>? alpha = null)
    {
        var rgba = new byte[image.Width * image.Height * 4];
        for (var i = 0; i < image.Width * image.Height; i++)
        {
            rgba[4 * i] = image.Pixels[3 * i];
            rgba[4 * i + 1] = image.Pixels[3 * i + 1];
            rgba[4 * i + 2] = image.Pixels[3 * i + 2];
            rgba[4 * i + 3] = alpha?.Invoke(i) ?? 255;
        }
        return rgba;
    }

    internal static string WriteJpeg(string path, RgbImage image, int quality = 95)
    {
        File.WriteAllBytes(path, SkiaEncode(image.Width, image.Height, SKColorType.Rgba8888, SKAlphaType.Opaque, ToRgba(image),
            SKEncodedImageFormat.Jpeg, quality));
        return path;
    }

    [Test]
    public void PngSavedAndLoadedIsExactAndWrittenAtomically()
    {
        using var dir = new TempDirectory();
        var image = RandomImage(37, 23, seed: 1);
        var path = dir.File("sub/a.png");
        image.Save(path);
        var loaded = RgbImage.Load(path);
        Assert.That(loaded.Width, Is.EqualTo(37));
        Assert.That(loaded.Height, Is.EqualTo(23));
        Assert.That(loaded.Pixels, Is.EqualTo(image.Pixels));
        Assert.That(Directory.GetFiles(Path.GetDirectoryName(path)!), Is.EqualTo(new[] { path }), "no temporary file is left behind");
    }

    [Test]
    public void PngWrittenBySkiaSharpDecodesExactlyInHwcOrder()
    {
        // Pixel (x, y) = (x, y, x + y) makes the layout visible.
        const int w = 5, h = 3;
        var rgba = new byte[w * h * 4];
        for (var y = 0; y < h; y++)
            for (var x = 0; x < w; x++)
            {
                var i = 4 * (y * w + x);
                (rgba[i], rgba[i + 1], rgba[i + 2], rgba[i + 3]) = ((byte)(10 * x), (byte)(50 * y), (byte)(x + y), 255);
            }
        var image = RgbImage.Decode(SkiaEncode(w, h, SKColorType.Rgba8888, SKAlphaType.Opaque, rgba, SKEncodedImageFormat.Png));
        Assert.That(image.Pixels[image.Offset(4, 2)..(image.Offset(4, 2) + 3)], Is.EqualTo(new byte[] { 40, 100, 6 }));
        Assert.That(image.Pixels[3..6], Is.EqualTo(new byte[] { 10, 0, 1 }), "pixel (1, 0) follows pixel (0, 0)");
        Assert.That(image.Pixels[(3 * w)..(3 * w + 3)], Is.EqualTo(new byte[] { 0, 50, 1 }), "row 1 starts after w pixels");
    }

    [Test]
    public void AlphaIsDroppedWithoutPremultiplying()
    {
        var image = RandomImage(16, 9, seed: 2);
        var rgba = ToRgba(image, i => (byte)(i * 7 % 256));
        var png = SkiaEncode(16, 9, SKColorType.Rgba8888, SKAlphaType.Unpremul, rgba, SKEncodedImageFormat.Png);
        var decoded = RgbImage.Decode(png);
        // Fully transparent pixels included: their stored colour survives.
        Assert.That(decoded.Pixels, Is.EqualTo(image.Pixels));
    }

    [Test]
    public void GreyPngAndGreyJpegBecomeRgb()
    {
        const int w = 20, h = 10;
        var grey = new byte[w * h];
        for (var i = 0; i < grey.Length; i++) grey[i] = (byte)(i * 13 % 256);
        var png = RgbImage.Decode(SkiaEncode(w, h, SKColorType.Gray8, SKAlphaType.Opaque, grey, SKEncodedImageFormat.Png));
        Assert.That(png.Pixels, Is.EqualTo(RgbImage.FromGrey(w, h, grey).Pixels));

        var smooth = new byte[w * h];
        for (var i = 0; i < smooth.Length; i++) smooth[i] = (byte)(100 + i / 2);
        var jpeg = RgbImage.Decode(SkiaEncode(w, h, SKColorType.Gray8, SKAlphaType.Opaque, smooth, SKEncodedImageFormat.Jpeg, 95));
        for (var i = 0; i < smooth.Length; i++)
        {
            Assert.That(jpeg.Pixels[3 * i + 1], Is.EqualTo(jpeg.Pixels[3 * i]), "R = G");
            Assert.That(jpeg.Pixels[3 * i + 2], Is.EqualTo(jpeg.Pixels[3 * i]), "R = B");
            Assert.That((int)jpeg.Pixels[3 * i], Is.EqualTo(smooth[i]).Within(4));
        }
    }

    [Test]
    public void JpegDecodesWithinTolerance()
    {
        using var dir = new TempDirectory();
        var image = Gradient(64, 48);
        var path = WriteJpeg(dir.File("g.JPG"), image, quality: 95);
        var decoded = RgbImage.Load(path);
        Assert.That((decoded.Width, decoded.Height), Is.EqualTo((64, 48)));
        var diffs = decoded.Pixels.Zip(image.Pixels, (a, b) => Math.Abs(a - b)).ToArray();
        Assert.That(diffs.Average(), Is.LessThan(2.0));
        Assert.That(diffs.Max(), Is.LessThanOrEqualTo(16));
    }

    [Test]
    public void PaletteGreyAlphaAnd16BitPngsBecome8BitRgb()
    {
        // Palette: 3 colours, indices 0 1 2 2 1 0.
        var palette = new byte[] { 255, 0, 0, 0, 128, 0, 10, 20, 30 };
        var pal = RgbImage.Decode(MiniPng.Encode(3, 2, MiniPng.Palette, 8, [0, 1, 2, 2, 1, 0], palette));
        Assert.That(pal.Pixels, Is.EqualTo(new byte[] { 255, 0, 0, 0, 128, 0, 10, 20, 30, 10, 20, 30, 0, 128, 0, 255, 0, 0 }));

        // Grey + alpha: the grey is replicated, the alpha dropped (a transparent pixel keeps its grey).
        var la = RgbImage.Decode(MiniPng.Encode(2, 1, MiniPng.GreyAlpha, 8, [77, 0, 200, 128]));
        Assert.That(la.Pixels, Is.EqualTo(new byte[] { 77, 77, 77, 200, 200, 200 }));

        // 16-bit RGB: the high byte is the 8-bit value (0xAB00 / 257 rounds to 0xAA, so compare within 1).
        var rgb16 = RgbImage.Decode(MiniPng.Encode(1, 1, MiniPng.Rgb, 16, [0xFF, 0xFF, 0x80, 0x80, 0x00, 0x00]));
        Assert.That(rgb16.Pixels.Select(b => (int)b), Is.EqualTo(new[] { 255, 128, 0 }).Within(1));
    }

    [Test]
    public void CorruptTruncatedEmptyAndMissingFilesNameTheFile()
    {
        using var dir = new TempDirectory();
        var garbage = dir.File("garbage.png");
        File.WriteAllBytes(garbage, "this is not an image at all"u8.ToArray());
        var e = Assert.Throws<InvalidDataException>(() => RgbImage.Load(garbage))!;
        Assert.That(e.Message, Does.StartWith(garbage).And.Contain("not a supported image"));

        var truncated = dir.File("truncated.png");
        var png = RandomImage(40, 40, seed: 3).EncodePng();
        File.WriteAllBytes(truncated, png[..(png.Length / 2)]);
        e = Assert.Throws<InvalidDataException>(() => RgbImage.Load(truncated))!;
        Assert.That(e.Message, Does.StartWith(truncated).And.Contain("truncated or corrupt"));

        var empty = dir.File("empty.jpg");
        File.WriteAllBytes(empty, []);
        e = Assert.Throws<InvalidDataException>(() => RgbImage.Load(empty))!;
        Assert.That(e.Message, Does.StartWith(empty).And.Contain("empty"));

        var missing = dir.File("missing.png");
        var nf = Assert.Throws<FileNotFoundException>(() => RgbImage.Load(missing))!;
        Assert.That(nf.Message, Does.Contain(missing));

        e = Assert.Throws<InvalidDataException>(() => RgbImage.Decode(new byte[] { 1, 2, 3 }, "blob #7"))!;
        Assert.That(e.Message, Does.StartWith("blob #7:"));
    }

    [Test]
    public void ConstructorRejectsAWrongPixelCount()
    {
        var e = Assert.Throws<ArgumentException>(() => new RgbImage(2, 2, new byte[11]))!;
        Assert.That(e.Message, Does.Contain("needs 12 bytes; got 11"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new RgbImage(0, 2, []));
    }

    [Test]
    public void CropAndFlipMovePixelsExactly()
    {
        var image = RandomImage(6, 4, seed: 4);
        var crop = image.Crop(2, 1, 3, 2);
        for (var y = 0; y < 2; y++)
            for (var x = 0; x < 3; x++)
                Assert.That(crop.Pixels[crop.Offset(x, y)..(crop.Offset(x, y) + 3)],
                    Is.EqualTo(image.Pixels[image.Offset(x + 2, y + 1)..(image.Offset(x + 2, y + 1) + 3)]));
        Assert.Throws<ArgumentOutOfRangeException>(() => image.Crop(4, 0, 3, 1));

        var flipped = image.FlipHorizontal();
        for (var y = 0; y < 4; y++)
            for (var x = 0; x < 6; x++)
                Assert.That(flipped.Pixels[flipped.Offset(x, y)..(flipped.Offset(x, y) + 3)],
                    Is.EqualTo(image.Pixels[image.Offset(5 - x, y)..(image.Offset(5 - x, y) + 3)]));
        Assert.That(flipped.FlipHorizontal().Pixels, Is.EqualTo(image.Pixels));
    }
}
