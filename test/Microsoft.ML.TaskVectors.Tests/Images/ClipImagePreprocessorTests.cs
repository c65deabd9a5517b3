using Microsoft.ML.TaskVectors.Images;
using Microsoft.ML.TaskVectors.Models;

namespace Microsoft.ML.TaskVectors.Tests.Images;

public class ClipImagePreprocessorTests
{
    private static readonly double[] Mean = [0.48145466, 0.4578275, 0.40821073];
    private static readonly double[] Std = [0.26862954, 0.26130258, 0.27577711];

    [TestCase(500, 375, 224, 298, 224)]
    [TestCase(375, 500, 224, 224, 298)]
    [TestCase(224, 224, 224, 224, 224)]
    [TestCase(13, 9, 224, 323, 224)]    // 224·13/9 = 323.6 truncates
    [TestCase(1000, 3, 7, 2333, 7)]
    public void ResizedSizeFollowsTorchvision(int w, int h, int size, int expectedW, int expectedH)
    {
        Assert.That(ClipImagePreprocessor.ResizedSize(w, h, size), Is.EqualTo((expectedW, expectedH)));
    }

    [TestCase(298, 224, 224, 37, 0)]
    [TestCase(225, 224, 224, 0, 0)]   // round(0.5) = 0 (half to even)
    [TestCase(227, 224, 224, 2, 0)]   // round(1.5) = 2
    [TestCase(229, 224, 224, 2, 0)]   // round(2.5) = 2
    [TestCase(224, 231, 224, 0, 4)]   // round(3.5) = 4
    public void CenterCropOffsetRoundsLikePython(int w, int h, int size, int left, int top)
    {
        Assert.That(ClipImagePreprocessor.CenterCropOffset(w, h, size), Is.EqualTo((left, top)));
    }

    [Test]
    public void CenterCropTakesTheMiddleAndPadsSmallImages()
    {
        var image = RgbImageTests.RandomImage(9, 5, seed: 1);
        var crop = ClipImagePreprocessor.CenterCrop(image, 4);
        // left = round(2.5) = 2, top = round(0.5) = 0
        Assert.That(crop.Pixels, Is.EqualTo(image.Crop(2, 0, 4, 4).Pixels));

        // A 2×3 image cropped to 4: torchvision pads ⌊2/2⌋ = 1 column left, ⌊1/2⌋ = 0 rows on top.
        var small = RgbImage.Filled(2, 3, 9, 9, 9);
        var padded = ClipImagePreprocessor.CenterCrop(small, 4);
        var red = Enumerable.Range(0, 16).Select(i => padded.Pixels[3 * i]).ToArray();
        Assert.That(red, Is.EqualTo(new byte[] { 0, 9, 9, 0, 0, 9, 9, 0, 0, 9, 9, 0, 0, 0, 0, 0 }));
    }

    [Test]
    public void NormalisesWithClipMeanAndStdInChwOrder()
    {
        var pre = new ClipImagePreprocessor(new ClipImagePreprocessorOptions { ImageSize = 2 });
        // Pixels (x, y): (0,0) = (255, 0, 128), (1,0) = (0, 255, 64), (0,1) = (10, 20, 30), (1,1) = (1, 2, 3).
        var image = new RgbImage(2, 2, [255, 0, 128, 0, 255, 64, 10, 20, 30, 1, 2, 3]);
        var output = pre.Process(image);
        var rgb = new[] { new[] { 255, 0, 10, 1 }, new[] { 0, 255, 20, 2 }, new[] { 128, 64, 30, 3 } };
        for (var c = 0; c < 3; c++)
            for (var i = 0; i < 4; i++)
                Assert.That(output[c * 4 + i], Is.EqualTo((rgb[c][i] / 255.0 - Mean[c]) / Std[c]).Within(1e-5),
                    $"channel {c}, pixel {i}");
        // Spot values worked out by hand: (1 − 0.48145466) / 0.26862954 = 1.930336, (0 − 0.4578275) / 0.26130258 = −1.752097.
        Assert.That(output[0], Is.EqualTo(1.930336).Within(1e-5));
        Assert.That(output[4 + 0], Is.EqualTo(-1.752097).Within(1e-5));
    }

    [Test]
    public void ProcessIsResizeThenCentreCropThenNormalise()
    {
        var image = RgbImageTests.RandomImage(45, 31, seed: 7);
        var pre = new ClipImagePreprocessor(new ClipImagePreprocessorOptions { ImageSize = 24 });
        var output = pre.Process(image);

        // Reference: resize 45×31 → ⌊24·45/31⌋ = 34 × 24, crop from left round(5.0) = 5, then normalise in double.
        var resized = BicubicResamplerTests.ReferenceResize.Resize(image.Pixels, 45, 31, 34, 24);
        for (var c = 0; c < 3; c++)
            for (var y = 0; y < 24; y++)
                for (var x = 0; x < 24; x++)
                {
                    var v = resized[(y * 34 + x + 5) * 3 + c];
                    Assert.That(output[(c * 24 + y) * 24 + x], Is.EqualTo((v / 255.0 - Mean[c]) / Std[c]).Within(1e-5));
                }
    }

    [Test]
    public void BatchHelpersMatchSingleImages()
    {
        var pre = new ClipImagePreprocessor(new ClipImagePreprocessorOptions { ImageSize = 16 });
        var images = new[] { RgbImageTests.RandomImage(20, 30, 1), RgbImageTests.RandomImage(16, 16, 2), RgbImageTests.RandomImage(50, 9, 3) };
        var batch = pre.ProcessBatch(images);
        Assert.That(batch.Length, Is.EqualTo(3 * 3 * 16 * 16));
        for (var i = 0; i < images.Length; i++)
            Assert.That(batch.AsSpan(i * pre.ValuesPerImage, pre.ValuesPerImage).ToArray(), Is.EqualTo(pre.Process(images[i])));

        using var tensor = pre.ToTensor(images);
        Assert.That(tensor.shape, Is.EqualTo(new long[] { 3, 3, 16, 16 }));
        Assert.That(tensor.dtype, Is.EqualTo(TorchSharp.torch.ScalarType.Float32));
        Assert.That(tensor.data<float>().ToArray(), Is.EqualTo(batch));

        var tooSmall = new float[batch.Length - 1];
        Assert.Throws<ArgumentException>(() => pre.ProcessBatch(images, tooSmall));
    }

    [Test]
    public void DefaultsAreClipsAndOptionsAreValidated()
    {
        var pre = new ClipImagePreprocessor();
        Assert.That(pre.ImageSize, Is.EqualTo(224));
        Assert.That(pre.Options.Mean, Is.EqualTo(new[] { 0.48145466f, 0.4578275f, 0.40821073f }));
        Assert.That(pre.Options.Std, Is.EqualTo(new[] { 0.26862954f, 0.26130258f, 0.27577711f }));
        Assert.That(ClipImagePreprocessor.For(new ClipVisionConfig(32, 8, 64, 2, 4, 128)).ImageSize, Is.EqualTo(32));

        Assert.Throws<ArgumentOutOfRangeException>(() => new ClipImagePreprocessor(new ClipImagePreprocessorOptions { ImageSize = 0 }));
        var e = Assert.Throws<ArgumentException>(() => new ClipImagePreprocessor(new ClipImagePreprocessorOptions { Std = [1f, 0f, 1f] }))!;
        Assert.That(e.ParamName, Is.EqualTo("Std"));
        e = Assert.Throws<ArgumentException>(() => new ClipImagePreprocessor(new ClipImagePreprocessorOptions { Mean = [0.5f] }))!;
        Assert.That(e.ParamName, Is.EqualTo("Mean"));
    }
}
