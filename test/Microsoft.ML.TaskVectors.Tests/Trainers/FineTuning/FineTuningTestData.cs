using Microsoft.ML.TaskVectors.Images;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Tests.Heads;
using Microsoft.ML.TaskVectors.Tests.Text;

namespace Microsoft.ML.TaskVectors.Tests.Trainers.FineTuning;

/// <summary>Tiny models and tiny generated image tasks for the fine-tuning tests.</summary>
internal static class FineTuningTestData
{
    /// <summary>The classes of <see cref="WriteColourTask"/>, in folder (label) order, and their base colours.</summary>
    public static readonly (string Name, byte R, byte G, byte B)[] Colours =
    [
        ("blue", 40, 60, 210),
        ("green", 50, 200, 70),
        ("red", 215, 45, 40),
    ];

    /// <summary>
    /// An ImageFolder task under <paramref name="root"/>: 16×16 PNGs of three colours with seeded per-pixel noise
    /// (±40), <paramref name="train"/> train, <paramref name="val"/> val (no val folder when 0) and
    /// <paramref name="test"/> test images per class.
    /// </summary>
    public static string WriteColourTask(string root, int train = 8, int val = 2, int test = 3, int seed = 5)
    {
        var random = new Random(seed);
        foreach (var (split, count) in new[] { ("train", train), ("val", val), ("test", test) })
            foreach (var (name, r, g, b) in Colours)
                for (int i = 0; i < count; i++)
                {
                    var folder = Path.Combine(root, split, name);
                    Directory.CreateDirectory(folder);
                    Noisy(r, g, b, random).Save(Path.Combine(folder, $"{i:D2}.png"));
                }
        return root;
    }

    private static RgbImage Noisy(byte r, byte g, byte b, Random random)
    {
        var pixels = new byte[16 * 16 * 3];
        byte[] basis = [r, g, b];
        for (int i = 0; i < pixels.Length; i++) pixels[i] = (byte)Math.Clamp(basis[i % 3] + random.Next(-40, 41), 0, 255);
        return new RgbImage(16, 16, pixels);
    }

    /// <summary>
    /// A tiny random CLIP model saved as a Hugging Face folder with the test BPE vocabulary (so zero-shot heads can be
    /// built from it), open_clip naming when asked.
    /// </summary>
    public static string WriteModel(TempDirectory dir, string name = "model", long seed = 17, ClipNaming naming = ClipNaming.HuggingFace)
    {
        var folder = TestBpeFiles.WriteHuggingFace(dir, name);
        using var model = ClipModel.CreateRandom(ClassificationHeadTests.TinyClipForTestVocabulary(), seed);
        model.Save(folder, naming);
        return folder;
    }
}
