using Microsoft.ML.TaskVectors.Images;

namespace Microsoft.ML.TaskVectors.Tests.Images;

public class ImageAugmentationTests
{
    private static readonly ClipImagePreprocessorOptions Small = new() { ImageSize = 16 };

    private static float[] Apply(ImageAugmentation aug, RgbImage image, AugmentationParameters p)
    {
        var output = new float[aug.ValuesPerImage];
        aug.Apply(image, p, output);
        return output;
    }

    /// <summary>The [0, 1] value behind a normalised output value.</summary>
    private static double Unnormalise(float v, int c) =>
        v * ClipImagePreprocessorOptions.ClipStd[c] + ClipImagePreprocessorOptions.ClipMean[c];

    [Test]
    public void SameSeedGivesSamePixelsAndOtherSeedsDiffer()
    {
        var aug = new ImageAugmentation(new ImageAugmentationOptions { Preprocessing = Small, Brightness = 0.4f, Contrast = 0.4f, Saturation = 0.4f, Hue = 0.1f });
        var image = RgbImageTests.Gradient(40, 30);
        var a = aug.Apply(image, seed: 42);
        var b = aug.Apply(image, seed: 42);
        var c = aug.Apply(image, seed: 43);
        Assert.That(b, Is.EqualTo(a));
        Assert.That(c, Is.Not.EqualTo(a));

        var r1 = new Random(5);
        var r2 = new Random(5);
        Assert.That(aug.SampleParameters(40, 30, r2), Is.EqualTo(aug.SampleParameters(40, 30, r1)).Using<AugmentationParameters>(SameParameters));
        Assert.That(aug.Apply(image, r2), Is.EqualTo(aug.Apply(image, r1)));
    }

    private static bool SameParameters(AugmentationParameters x, AugmentationParameters y) =>
        x with { ColorJitter = [] } == y with { ColorJitter = [] } && x.ColorJitter.SequenceEqual(y.ColorJitter);

    [Test]
    public void FlipMirrorsTheOutputExactly()
    {
        var aug = new ImageAugmentation(new ImageAugmentationOptions { Preprocessing = Small });
        var image = RgbImageTests.RandomImage(30, 20, seed: 3);
        var plain = new AugmentationParameters(3, 2, 20, 15, Flip: false, []);
        var a = Apply(aug, image, plain);
        var b = Apply(aug, image, plain with { Flip = true });
        const int s = 16;
        for (var c = 0; c < 3; c++)
            for (var y = 0; y < s; y++)
                for (var x = 0; x < s; x++)
                    Assert.That(b[(c * s + y) * s + x], Is.EqualTo(a[(c * s + y) * s + (s - 1 - x)]));
    }

    [Test]
    public void WithoutJitterTheOutputIsTheResizedCropNormalisedLikeThePreprocessor()
    {
        var aug = new ImageAugmentation(new ImageAugmentationOptions { Preprocessing = Small });
        var image = RgbImageTests.RandomImage(30, 20, seed: 4);
        var p = new AugmentationParameters(5, 1, 12, 18, Flip: false, []);
        var expected = new float[aug.ValuesPerImage];
        var square = new RgbImage(16, 16, BicubicResamplerTests.ReferenceResize.Resize(image.Crop(5, 1, 12, 18).Pixels, 12, 18, 16, 16));
        new ClipImagePreprocessor(Small).Normalize(square, expected);
        Assert.That(Apply(aug, image, p), Is.EqualTo(expected));
    }

    [Test]
    public void CropBoxesStayInsideWithinScaleAndRatio()
    {
        var random = new Random(11);
        for (var n = 0; n < 500; n++)
        {
            var (w, h) = (random.Next(20, 400), random.Next(20, 400));
            var (left, top, cw, ch) = ImageAugmentation.RandomResizedCropBox(w, h, random);
            Assert.That(left >= 0 && top >= 0 && cw > 0 && ch > 0 && left + cw <= w && top + ch <= h, $"{w}×{h}: ({left}, {top}) {cw}×{ch}");
            var area = (double)cw * ch / (w * h);
            var ratio = (double)cw / ch;
            var fallback = cw == w || ch == h;
            if (!fallback)
            {
                // Rounding each side to whole pixels moves area and ratio a little beyond the drawn values.
                var slack = 1.0 / Math.Min(cw, ch) * 2 + 1e-9;
                Assert.That(area, Is.InRange(0.08 * (1 - slack), 1.0));
                Assert.That(ratio, Is.InRange(0.75 * (1 - slack), 4.0 / 3 * (1 + slack)));
            }
        }
    }

    [Test]
    public void ImpossibleCropsFallBackToTheCentredRatioClampedImage()
    {
        // A 10×1000 strip: every try wants ≈95 px width, so all ten fail; the fallback keeps the full width
        // and height round(10 / 0.75) = 13, centred: top = (1000 − 13) / 2 = 493.
        var box = ImageAugmentation.RandomResizedCropBox(10, 1000, new Random(1), minScale: 0.9, maxScale: 1.0);
        Assert.That(box, Is.EqualTo((0, 493, 10, 13)));
        // A wide strip: full height, width round(20 · 4/3) = 27, left = (1000 − 27) / 2 = 486.
        box = ImageAugmentation.RandomResizedCropBox(1000, 20, new Random(1), minScale: 0.9, maxScale: 1.0);
        Assert.That(box, Is.EqualTo((486, 0, 27, 20)));
        // A square narrower than ratio 2: width 5, height round(5 / 2) = round(2.5) = 2 (half to even), top 1.
        box = ImageAugmentation.RandomResizedCropBox(5, 5, new Random(1), minScale: 1.0, maxScale: 1.0, minRatio: 2, maxRatio: 3);
        Assert.That(box, Is.EqualTo((0, 1, 5, 2)));
    }

    [Test]
    public void FlipProbabilityIsHonoured()
    {
        var always = new ImageAugmentation(new ImageAugmentationOptions { Preprocessing = Small, FlipProbability = 1 });
        var never = new ImageAugmentation(new ImageAugmentationOptions { Preprocessing = Small, FlipProbability = 0 });
        var half = new ImageAugmentation(new ImageAugmentationOptions { Preprocessing = Small });
        var random = new Random(3);
        Assert.That(Enumerable.Range(0, 50).All(_ => always.SampleParameters(30, 30, random).Flip));
        Assert.That(Enumerable.Range(0, 50).Any(_ => never.SampleParameters(30, 30, random).Flip), Is.False);
        var flips = Enumerable.Range(0, 2000).Count(_ => half.SampleParameters(30, 30, random).Flip);
        Assert.That(flips, Is.InRange(900, 1100));
    }

    [Test]
    public void ColourOperationsFollowTheirDefinitions()
    {
        var aug = new ImageAugmentation(new ImageAugmentationOptions { Preprocessing = Small });
        var image = RgbImageTests.Gradient(16, 16);
        var whole = new AugmentationParameters(0, 0, 16, 16, false, []);
        double Before(int c, int i) => image.Pixels[3 * i + c] / 255.0;

        var bright = Apply(aug, image, whole with { ColorJitter = [new(ColorJitterKind.Brightness, 1.5f)] });
        for (var i = 0; i < 256; i++)
            for (var c = 0; c < 3; c++)
                Assert.That(Unnormalise(bright[c * 256 + i], c), Is.EqualTo(Math.Min(1.0, 1.5 * Before(c, i))).Within(1e-5));

        var grey = Apply(aug, image, whole with { ColorJitter = [new(ColorJitterKind.Saturation, 0f)] });
        for (var i = 0; i < 256; i++)
        {
            var luma = 0.2989 * Before(0, i) + 0.587 * Before(1, i) + 0.114 * Before(2, i);
            for (var c = 0; c < 3; c++) Assert.That(Unnormalise(grey[c * 256 + i], c), Is.EqualTo(luma).Within(1e-5));
        }

        var flat = Apply(aug, image, whole with { ColorJitter = [new(ColorJitterKind.Contrast, 0f)] });
        var mean = Enumerable.Range(0, 256).Average(i => 0.2989 * Before(0, i) + 0.587 * Before(1, i) + 0.114 * Before(2, i));
        for (var i = 0; i < 256; i++)
            for (var c = 0; c < 3; c++) Assert.That(Unnormalise(flat[c * 256 + i], c), Is.EqualTo(mean).Within(1e-5));

        // Hue: a third of a turn takes red to green, green to blue; a full turn changes nothing.
        var red = RgbImage.Filled(16, 16, 255, 0, 0);
        var green = Apply(aug, red, whole with { ColorJitter = [new(ColorJitterKind.Hue, 1f / 3)] });
        Assert.That(new[] { Unnormalise(green[0], 0), Unnormalise(green[256], 1), Unnormalise(green[512], 2) },
            Is.EqualTo(new[] { 0.0, 1.0, 0.0 }).Within(1e-5));
        var shifted = Apply(aug, image, whole with { ColorJitter = [new(ColorJitterKind.Hue, 0.5f), new(ColorJitterKind.Hue, 0.5f)] });
        Assert.That(shifted, Is.EqualTo(Apply(aug, image, whole)).Within(1e-4));
    }

    [Test]
    public void JitterFactorsAreDrawnInRangeAndOnlyForEnabledOperations()
    {
        var aug = new ImageAugmentation(new ImageAugmentationOptions { Preprocessing = Small, Brightness = 0.2f, Hue = 0.05f });
        var random = new Random(8);
        for (var n = 0; n < 200; n++)
        {
            var steps = aug.SampleParameters(20, 20, random).ColorJitter;
            Assert.That(steps.Select(s => s.Kind).OrderBy(k => k), Is.EqualTo(new[] { ColorJitterKind.Brightness, ColorJitterKind.Hue }));
            Assert.That(steps.Single(s => s.Kind == ColorJitterKind.Brightness).Factor, Is.InRange(0.8f, 1.2f));
            Assert.That(steps.Single(s => s.Kind == ColorJitterKind.Hue).Factor, Is.InRange(-0.05f, 0.05f));
        }
        Assert.That(new ImageAugmentation(new ImageAugmentationOptions { Preprocessing = Small })
            .SampleParameters(20, 20, random).ColorJitter, Is.Empty);
    }

    [Test]
    public void BatchDrawsImageByImageInOrder()
    {
        var aug = new ImageAugmentation(new ImageAugmentationOptions { Preprocessing = Small, Saturation = 0.5f });
        var images = new[] { RgbImageTests.Gradient(30, 20), RgbImageTests.RandomImage(17, 40, 1), RgbImageTests.Gradient(16, 16) };
        var batch = new float[3 * aug.ValuesPerImage];
        aug.ApplyBatch(images, new Random(9), batch);
        var random = new Random(9);
        for (var i = 0; i < 3; i++)
            Assert.That(batch.AsSpan(i * aug.ValuesPerImage, aug.ValuesPerImage).ToArray(), Is.EqualTo(aug.Apply(images[i], random)));
    }

    [Test]
    public void OptionsAreValidated()
    {
        Assert.Throws<ArgumentException>(() => new ImageAugmentation(new ImageAugmentationOptions { MinScale = 0 }));
        Assert.Throws<ArgumentException>(() => new ImageAugmentation(new ImageAugmentationOptions { MinRatio = 2, MaxRatio = 1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ImageAugmentation(new ImageAugmentationOptions { FlipProbability = 1.5 }));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new ImageAugmentation(new ImageAugmentationOptions { Hue = 0.6f }))!;
        Assert.That(e.ParamName, Is.EqualTo("Hue"));
        e = Assert.Throws<ArgumentOutOfRangeException>(() => new ImageAugmentation(new ImageAugmentationOptions { Contrast = -1 }))!;
        Assert.That(e.ParamName, Is.EqualTo("Contrast"));
    }
}
