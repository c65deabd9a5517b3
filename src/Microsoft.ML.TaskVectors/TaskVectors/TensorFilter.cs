using System.Text.RegularExpressions;
using Microsoft.ML.TaskVectors.Checkpoints;

namespace Microsoft.ML.TaskVectors.TaskVectors;

/// <summary>
/// Chooses which tensors of a checkpoint belong to task vectors: floating-point tensors whose name
/// matches at least one include pattern (all, when there are none) and no exclude pattern.
/// Integer buffers (position ids and the like) are never included.
/// </summary>
public sealed class TensorFilter
{
    private readonly Regex[] _include;
    private readonly Regex[] _exclude;

    /// <summary>Creates a filter from regular expressions matched against tensor names.</summary>
    /// <exception cref="ArgumentException">A pattern is not a valid regular expression; the message names it.</exception>
    public TensorFilter(IEnumerable<string>? include = null, IEnumerable<string>? exclude = null)
    {
        Include = include?.ToArray() ?? [];
        Exclude = exclude?.ToArray() ?? [];
        _include = Include.Select(Compile).ToArray();
        _exclude = Exclude.Select(Compile).ToArray();
    }

    /// <summary>Include patterns (empty: every tensor).</summary>
    public IReadOnlyList<string> Include { get; }

    /// <summary>Exclude patterns.</summary>
    public IReadOnlyList<string> Exclude { get; }

    /// <summary>Every floating-point tensor.</summary>
    public static TensorFilter All { get; } = new();

    /// <summary>
    /// The CLIP vision tower in either naming: Hugging Face (<c>vision_model.*</c>,
    /// <c>visual_projection.*</c>) or OpenAI/open_clip (<c>visual.*</c>).
    /// </summary>
    public static TensorFilter ClipVisionTower { get; } =
        new(include: [@"^vision_model\.", @"^visual_projection\.", @"^visual\."]);

    private static Regex Compile(string pattern)
    {
        try
        {
            // Interpreted: a filter matches a few hundred names once, less than compiling would cost.
            return new Regex(pattern, RegexOptions.CultureInvariant);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"Tensor name pattern '{pattern}' is not a valid regular expression: {e.Message}", e);
        }
    }

    /// <summary>True when the tensor belongs to task vectors.</summary>
    public bool Matches(TensorInfo tensor) =>
        tensor.DType.IsFloatingPoint()
        && (_include.Length == 0 || _include.Any(r => r.IsMatch(tensor.Name)))
        && !_exclude.Any(r => r.IsMatch(tensor.Name));
}
