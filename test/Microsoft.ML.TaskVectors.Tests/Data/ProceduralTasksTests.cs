using System.Numerics;
using System.Security.Cryptography;
using Microsoft.ML.TaskVectors.Data;
using Microsoft.ML.TaskVectors.Images;

namespace Microsoft.ML.TaskVectors.Tests.Data;

public class ProceduralTasksTests
{
    private static readonly ProceduralTaskOptions Small = new() { TrainPerClass = 3, ValidationPerClass = 2, TestPerClass = 1 };

    private static IEnumerable<string> FamilyNames() => ProceduralTasks.Families.Select(f => f.Name);

    [Test]
    public void TheCatalogueHasEightFamiliesWithTheirClassNames()
    {
        var classes = ProceduralTasks.Families.ToDictionary(f => f.Name, f => f.ClassNames);
        Assert.That(classes.Keys, Is.EqualTo(new[] { "shapes", "stripes", "colours", "counts", "quadrant", "textures", "digits", "sizes" }));
        Assert.That(classes["shapes"], Is.EqualTo(new[] { "circle", "square", "triangle", "cross", "diamond", "ring" }));
        Assert.That(classes["stripes"], Is.EqualTo(new[] { "horizontal", "vertical", "falling diagonal", "rising diagonal" }));
        Assert.That(classes["colours"], Is.EqualTo(new[] { "red", "orange", "yellow", "green", "cyan", "blue", "purple", "magenta" }));
        Assert.That(classes["counts"], Is.EqualTo(new[] { "one", "two", "three", "four", "five" }));
        Assert.That(classes["quadrant"], Is.EqualTo(new[] { "top left", "top right", "bottom left", "bottom right" }));
        Assert.That(classes["textures"], Is.EqualTo(new[] { "checkerboard", "dots", "grid", "noise", "gradient" }));
        Assert.That(classes["digits"], Is.EqualTo(new[] { "0", "1", "2", "3", "4", "5", "6", "7", "8", "9" }));
        Assert.That(classes["sizes"], Is.EqualTo(new[] { "small", "medium", "large" }));
        Assert.That(ProceduralTasks.Find(" Shapes "), Is.SameAs(ProceduralTasks.Families[0]));
    }

    [TestCaseSource(nameof(FamilyNames))]
    public void EverySplitHasItsDeclaredCountSizeAndBalancedLabels(string name)
    {
        var family = ProceduralTasks.Find(name);
        var options = Small with { ImageSize = 20 };
        var classes = family.ClassNames.Count;
        foreach (var (split, perClass) in new[] { (DatasetSplit.Train, 3), (DatasetSplit.Validation, 2), (DatasetSplit.Test, 1) })
        {
            var dataset = family.Open(split, options, "task")!;
            Assert.That((dataset.Name, dataset.Split, dataset.Count), Is.EqualTo(("task", split, perClass * classes)));
            Assert.That(dataset.ClassNames, Is.EqualTo(family.ClassNames));
            Assert.That(dataset.CountPerClass(), Is.EqualTo(Enumerable.Repeat(perClass, classes)));
            for (int i = 0; i < dataset.Count; i++)
            {
                var item = dataset.Get(i);
                Assert.That((item.Image.Width, item.Image.Height), Is.EqualTo((20, 20)));
                Assert.That(item.Label, Is.EqualTo(i % classes));
                Assert.That(item.Source, Is.EqualTo($"procedural:{name},seed=0/{split.FolderName()}#{i}"));
            }
            Assert.Throws<ArgumentOutOfRangeException>(() => dataset.LoadImage(dataset.Count));
        }
        Assert.That(family.Open(DatasetSplit.Test, options with { TestPerClass = 0 }), Is.Null);
        Assert.That(family.Open(DatasetSplit.Train)!.Count, Is.EqualTo(100 * classes), "default: 100 training images per class");
    }

    [Test]
    public void TheSameSeedGivesTheSamePixelsAndAnotherSeedOthers()
    {
        foreach (var family in ProceduralTasks.Families)
        {
            var a = family.Open(DatasetSplit.Train, Small with { Seed = 7 })!;
            var b = family.Open(DatasetSplit.Train, Small with { Seed = 7 })!;
            var other = family.Open(DatasetSplit.Train, Small with { Seed = 8 })!;
            var validation = family.Open(DatasetSplit.Validation, Small with { Seed = 7 })!;
            // In parallel and out of order: an image depends on its (seed, split, index) only.
            var parallel = new byte[a.Count][];
            Parallel.For(0, a.Count, i => parallel[a.Count - 1 - i] = b.LoadImage(a.Count - 1 - i).Pixels);
            for (int i = 0; i < a.Count; i++)
            {
                var pixels = a.LoadImage(i).Pixels;
                Assert.That(parallel[i].SequenceEqual(pixels), Is.True, $"{family.Name} #{i}");
                Assert.That(family.Generate(DatasetSplit.Train, i, Small with { Seed = 7 }).Image.Pixels.SequenceEqual(pixels), Is.True, $"{family.Name} #{i}");
                Assert.That(other.LoadImage(i).Pixels.SequenceEqual(pixels), Is.False, $"{family.Name} #{i}, seed 8");
                if (i < validation.Count) Assert.That(validation.LoadImage(i).Pixels.SequenceEqual(pixels), Is.False, $"{family.Name} #{i}, val");
            }
        }
    }

    [Test]
    public void TheImagesOfSeedZeroArePinned()
    {
        // Only +, −, ×, ÷, √ and integer hashing make the pixels, so these hold on every machine; a change to a
        // painter changes them (update the values only when the change is meant).
        string[] expected =
        [
            "shapes 15B16AAE80E99968", "stripes B096CA32E254BD26", "colours AA76466B86241E5F", "counts 0FDA56F449DC540F",
            "quadrant A5E91169BA67B3BA", "textures 1F372B4C13F6028E", "digits B20F6CB46BE05D48", "sizes 1472A9345D30CA01",
        ];
        var actual = ProceduralTasks.Families.Select(f =>
        {
            var pixels = Enumerable.Range(0, f.ClassNames.Count).SelectMany(i => f.Generate(DatasetSplit.Test, i, Small).Image.Pixels).ToArray();
            return $"{f.Name} {Convert.ToHexString(SHA256.HashData(pixels))[..16]}";
        });
        Assert.That(actual, Is.EqualTo(expected));
    }

    [Test]
    public void TheSameSceneIsDrawnAtEverySize()
    {
        // Geometry is in image units: a 64×64 image shrunk to 32×32 is close to the 32×32 image (the noise differs).
        foreach (var family in ProceduralTasks.Families)
        {
            var small = family.Generate(DatasetSplit.Train, 5, Small).Image;
            var large = family.Generate(DatasetSplit.Train, 5, Small with { ImageSize = 64 }).Image;
            var shrunk = new byte[small.Pixels.Length];
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++)
                    for (int c = 0; c < 3; c++)
                        shrunk[small.Offset(x, y) + c] = (byte)((large.Pixels[large.Offset(2 * x, 2 * y) + c] + large.Pixels[large.Offset(2 * x + 1, 2 * y) + c] +
                                                                 large.Pixels[large.Offset(2 * x, 2 * y + 1) + c] + large.Pixels[large.Offset(2 * x + 1, 2 * y + 1) + c] + 2) / 4);
            var meanDifference = shrunk.Zip(small.Pixels, (p, q) => Math.Abs(p - q)).Average();
            Assert.That(meanDifference, Is.LessThan(12), family.Name);
        }
    }

    [Test]
    public void ANearestClassMeanOnSimpleFeaturesLearnsEveryFamily()
    {
        // A real check that the classes differ: standardised nearest class mean, each feature weighted by its
        // between-class over within-class variance on train, scored on test. Halfway from chance to perfect is required.
        var options = new ProceduralTaskOptions { TrainPerClass = 30, TestPerClass = 15, Seed = 1 };
        var report = new List<string>();
        var failed = false;
        foreach (var family in ProceduralTasks.Families)
        {
            var train = family.Open(DatasetSplit.Train, options)!;
            var test = family.Open(DatasetSplit.Test, options)!;
            var accuracy = SimpleFeatures.NearestClassMeanAccuracy(train, test);
            var chance = 1.0 / family.ClassNames.Count;
            report.Add($"{family.Name} {accuracy:F2} (chance {chance:F2})");
            failed |= accuracy < chance + 0.5 * (1 - chance);
        }
        Assert.That(failed, Is.False, string.Join("; ", report));
    }

    [Test]
    public void ParseReadsTheFamilyAndOptions()
    {
        var (family, options) = ProceduralTasks.Parse("shapes");
        Assert.That((family.Name, options), Is.EqualTo(("shapes", new ProceduralTaskOptions())));
        (family, options) = ProceduralTasks.Parse(" Digits , seed=-3, size=48,TRAIN=7, val=5 ,test=0");
        Assert.That(family.Name, Is.EqualTo("digits"));
        Assert.That(options, Is.EqualTo(new ProceduralTaskOptions { Seed = -3, ImageSize = 48, TrainPerClass = 7, ValidationPerClass = 5, TestPerClass = 0 }));
    }

    [TestCase("triangles", "Unknown procedural task family 'triangles'; the families are shapes, stripes, colours, counts, quadrant, textures, digits, sizes.")]
    [TestCase("shapes,colour=3", "unknown key 'colour'; the keys, with their defaults, are seed=0, size=32 pixels, train=100, val=20 and test=50 images per class.")]
    [TestCase("shapes,seed", "expected KEY=VALUE once per key after the family, found 'seed'")]
    [TestCase("shapes,seed=1,seed=2", "expected KEY=VALUE once per key after the family, found 'seed=2'")]
    [TestCase("shapes,size=big", "size= needs a whole number, found 'big'")]
    [TestCase("shapes,size=4", "The image size (ImageSize, size=) must be 8 to 1024 pixels; got 4.")]
    [TestCase("shapes,train=0", "Training images per class (TrainPerClass, train=) must be 1 to 1000000; got 0.")]
    [TestCase("shapes,val=0", "Validation images per class (ValidationPerClass, val=) must be 1 to 1000000; got 0.")]
    [TestCase("shapes,test=-1", "Test images per class (TestPerClass, test=) must be 0 to 1000000; got -1.")]
    [TestCase("shapes,train=99999999999", "train=99999999999 is out of range")]
    public void ParseNamesWhatIsWrong(string text, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => ProceduralTasks.Parse(text))!;
        Assert.That(e.Message, Does.Contain(message));
    }

    [Test]
    public void OptionsOutOfRangeAreRefusedByName()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ProceduralTasks.Families[0].Open(DatasetSplit.Train, new ProceduralTaskOptions { ImageSize = 2000 }))!;
        Assert.That(e.ParamName, Is.EqualTo(nameof(ProceduralTaskOptions.ImageSize)));
        e = Assert.Throws<ArgumentOutOfRangeException>(() => ProceduralTasks.Families[0].Generate(DatasetSplit.Validation, 0, new ProceduralTaskOptions { ValidationPerClass = 0 }))!;
        Assert.That(e.ParamName, Is.EqualTo(nameof(ProceduralTaskOptions.ValidationPerClass)));
        e = Assert.Throws<ArgumentOutOfRangeException>(() => ProceduralTasks.Families[0].Generate(DatasetSplit.Test, 6, Small))!;
        Assert.That(e.Message, Does.Contain("Item 6 is outside procedural:shapes's test split, which has 6 items."));
    }

    /// <summary>Translation-tolerant hand-made features of an image and a weighted nearest-class-mean classifier over them.</summary>
    private static class SimpleFeatures
    {
        private const int Frequencies = 10;

        public static double NearestClassMeanAccuracy(LabeledImageDataset train, LabeledImageDataset test)
        {
            var x = Enumerable.Range(0, train.Count).AsParallel().AsOrdered().Select(i => Of(train.LoadImage(i))).ToArray();
            var y = train.GetLabels();
            int classes = train.ClassNames.Count, d = x[0].Length;
            var means = new double[classes, d];
            var overall = new double[d];
            for (int i = 0; i < x.Length; i++)
                for (int j = 0; j < d; j++)
                {
                    means[y[i], j] += x[i][j] * classes / x.Length;
                    overall[j] += x[i][j] / x.Length;
                }
            var weights = new double[d];
            for (int j = 0; j < d; j++)
            {
                double within = 0, between = 0;
                for (int i = 0; i < x.Length; i++) within += Math.Pow(x[i][j] - means[y[i], j], 2) / x.Length;
                for (int c = 0; c < classes; c++) between += Math.Pow(means[c, j] - overall[j], 2) / classes;
                weights[j] = between / Math.Pow(within + 1e-12, 2);
            }
            int correct = 0;
            for (int i = 0; i < test.Count; i++)
            {
                var f = Of(test.LoadImage(i));
                var distances = Enumerable.Range(0, classes).Select(c => Enumerable.Range(0, d).Sum(j => weights[j] * Math.Pow(f[j] - means[c, j], 2))).ToList();
                if (distances.IndexOf(distances.Min()) == test.GetLabel(i)) correct++;
            }
            return (double)correct / test.Count;
        }

        /// <summary>
        /// Mean colour; a foreground mask (pixels whose grey differs most from the median) as a 4×4 layout, its area
        /// and its number of connected parts; the mask's normalised Fourier magnitudes (shift-invariant form); and a
        /// histogram of gradient orientations.
        /// </summary>
        private static double[] Of(RgbImage image)
        {
            int n = image.Width;
            var grey = new double[n * n];
            var features = new List<double> { 0, 0, 0 };
            for (int i = 0; i < grey.Length; i++)
            {
                for (int c = 0; c < 3; c++) features[c] += image.Pixels[3 * i + c] / 255.0 / grey.Length;
                grey[i] = (0.299 * image.Pixels[3 * i] + 0.587 * image.Pixels[3 * i + 1] + 0.114 * image.Pixels[3 * i + 2]) / 255;
            }
            var median = grey.Order().ElementAt(grey.Length / 2);
            var deviation = grey.Select(v => Math.Abs(v - median)).ToArray();
            var threshold = deviation.Max() / 2;
            var mask = deviation.Select(v => v > threshold ? 1.0 : 0.0).ToArray();

            var layout = new double[16];
            for (int i = 0; i < mask.Length; i++) layout[i / n * 4 / n * 4 + i % n * 4 / n] += mask[i] * 16 / mask.Length;
            features.AddRange(layout);
            var area = mask.Average();
            features.Add(area);
            features.Add(Parts(mask, n));

            // Separable DFT of the mask at |u|, v ≤ Frequencies, (0, 0) left out; twiddle[m] = e^(−2πi·m/n).
            int k = Frequencies;
            var twiddle = Enumerable.Range(0, n).Select(m => Complex.FromPolarCoordinates(1, -2 * Math.PI * m / n)).ToArray();
            var rows = new Complex[n, 2 * k + 1];
            for (int i = 0; i < mask.Length; i++)
                if (mask[i] != 0)
                    for (int u = -k; u <= k; u++)
                        rows[i / n, u + k] += twiddle[(u * (i % n) % n + n) % n];
            var magnitudes = new List<double>();
            for (int v = 0; v <= k; v++)
                for (int u = v == 0 ? 1 : -k; u <= k; u++)
                {
                    var sum = Complex.Zero;
                    for (int r = 0; r < n; r++) sum += rows[r, u + k] * twiddle[v * r % n];
                    magnitudes.Add(sum.Magnitude);
                }
            var norm = Math.Sqrt(magnitudes.Sum(m => m * m)) + 1e-9;
            features.AddRange(magnitudes.Select(m => m / norm));

            var orientations = new double[8];
            for (int r = 1; r < n - 1; r++)
                for (int col = 1; col < n - 1; col++)
                {
                    double gx = grey[r * n + col + 1] - grey[r * n + col - 1], gy = grey[(r + 1) * n + col] - grey[(r - 1) * n + col];
                    var angle = Math.Atan2(gy, gx);
                    if (angle < 0) angle += Math.PI;
                    orientations[Math.Min(7, (int)(angle / Math.PI * 8))] += Math.Sqrt(gx * gx + gy * gy);
                }
            var total = orientations.Sum() + 1e-9;
            features.AddRange(orientations.Select(o => o / total));
            return features.ToArray();
        }

        /// <summary>Connected parts (4-neighbours) of a 0/1 mask.</summary>
        private static int Parts(double[] mask, int n)
        {
            var seen = new bool[mask.Length];
            var stack = new Stack<int>();
            int parts = 0;
            for (int start = 0; start < mask.Length; start++)
            {
                if (mask[start] == 0 || seen[start]) continue;
                parts++;
                seen[start] = true;
                stack.Push(start);
                while (stack.TryPop(out var i))
                {
                    int col = i % n, r = i / n;
                    foreach (var j in new[] { col > 0 ? i - 1 : -1, col < n - 1 ? i + 1 : -1, r > 0 ? i - n : -1, r < n - 1 ? i + n : -1 })
                        if (j >= 0 && mask[j] != 0 && !seen[j])
                        {
                            seen[j] = true;
                            stack.Push(j);
                        }
                }
            }
            return parts;
        }
    }
}
