using System.Globalization;
using static Microsoft.ML.TaskVectors.Data.ProceduralPainters;

namespace Microsoft.ML.TaskVectors.Data;

/// <summary>
/// An offline multi-task suite of procedural image classification tasks, no downloads: eight families that differ
/// in what tells their classes apart (form, orientation, hue, number, position, texture, glyph, scale), as the
/// eight datasets of the task-vector papers differ, so fine-tuning on each gives task vectors that differ.
/// </summary>
/// <remarks>
/// Images are small (32×32 by default; CLIP preprocessing resizes them) and drawn with plain arithmetic on demand,
/// thousands per second per core. Every image has a random background colour, lighting gradient and pixel noise,
/// and its content a random position, scale, rotation and colour, so the tasks are learnable but not trivial.
/// The same seed gives bit-identical pixels on every machine (see <see cref="ProceduralTaskFamily"/>).
/// </remarks>
public static class ProceduralTasks
{
    /// <summary>The families, in the order usage messages list them.</summary>
    public static IReadOnlyList<ProceduralTaskFamily> Families { get; } = Array.AsReadOnly<ProceduralTaskFamily>(
    [
        new("shapes", "the outline of one shape", ShapeNames, Shapes),
        new("stripes", "the orientation of stripes", ["horizontal", "vertical", "falling diagonal", "rising diagonal"], ProceduralPainters.Stripes),
        new("colours", "the dominant hue", Hues.Select(h => h.Name).ToArray(), Colours),
        new("counts", "how many blobs", CountNames, Counts),
        new("quadrant", "where one shape is", QuadrantNames, Quadrant),
        new("textures", "a surface pattern", TextureNames, Textures),
        new("digits", "a seven-segment digit", IdxDataset.DigitClassNames, Digits),
        new("sizes", "how large one shape is", ["small", "medium", "large"], Sizes),
    ]);

    /// <summary>The families' names, comma-separated, for messages.</summary>
    public static string FamilyNames => string.Join(", ", Families.Select(f => f.Name));

    /// <summary>The option keys <see cref="Parse"/> accepts, with their defaults, for messages.</summary>
    public static string OptionKeys { get; } = DefaultKeys(new ProceduralTaskOptions());

    private static string DefaultKeys(ProceduralTaskOptions d) =>
        $"seed={d.Seed}, size={d.ImageSize} pixels, train={d.TrainPerClass}, val={d.ValidationPerClass} and test={d.TestPerClass} images per class";

    /// <summary>The family named <paramref name="name"/> (ignoring case).</summary>
    /// <exception cref="ArgumentException">No family has that name; the message lists the families.</exception>
    public static ProceduralTaskFamily Find(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return Families.FirstOrDefault(f => string.Equals(f.Name, name.Trim(), StringComparison.OrdinalIgnoreCase))
            ?? throw new ArgumentException($"Unknown procedural task family '{name}'; the families are {FamilyNames}.");
    }

    /// <summary>
    /// Parses <c>FAMILY[,KEY=VALUE…]</c>, for example <c>shapes</c> or <c>shapes,seed=3,size=48,train=200</c>, with the
    /// keys of <see cref="OptionKeys"/>; omitted keys keep their defaults.
    /// </summary>
    /// <exception cref="ArgumentException">
    /// The family is unknown (the message lists the families), a key is unknown or repeated (the message lists the
    /// keys), or a value is not a whole number in its range (the message names the key).
    /// </exception>
    public static (ProceduralTaskFamily Family, ProceduralTaskOptions Options) Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        var family = Find(parts[0]);
        var options = new ProceduralTaskOptions();
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var part in parts.Skip(1))
        {
            var equals = part.IndexOf('=');
            var key = equals < 0 ? part : part[..equals].Trim();
            if (equals < 0 || !seen.Add(key))
                throw new ArgumentException($"Procedural task '{text}': expected KEY=VALUE once per key after the family, found '{part}'; the keys, with their defaults, are {OptionKeys}.");
            var value = part[(equals + 1)..].Trim();
            if (!long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number))
                throw new ArgumentException($"Procedural task '{text}': {key}= needs a whole number, found '{value}'.");
            int Int() => number is >= int.MinValue and <= int.MaxValue ? (int)number
                : throw new ArgumentException($"Procedural task '{text}': {key}={value} is out of range.");
            options = key.ToLowerInvariant() switch
            {
                "seed" => options with { Seed = number },
                "size" => options with { ImageSize = Int() },
                "train" => options with { TrainPerClass = Int() },
                "val" => options with { ValidationPerClass = Int() },
                "test" => options with { TestPerClass = Int() },
                _ => throw new ArgumentException($"Procedural task '{text}': unknown key '{key}'; the keys, with their defaults, are {OptionKeys}."),
            };
        }
        if (options.FindProblem() is { } problem) throw new ArgumentException($"Procedural task '{text}': {problem.Message}");
        return (family, options);
    }
}
