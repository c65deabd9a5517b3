using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.TaskVectors.Text;

/// <summary>
/// CLIP's text cleaning before BPE: NFC (the last step of ftfy's <c>fix_text</c>), HTML entities
/// unescaped twice (<c>basic_clean</c> calls <c>html.unescape</c> twice so <c>&amp;amp;amp;</c> becomes
/// <c>&amp;</c>), runs of white space collapsed to one space, trimmed, lower-cased.
/// </summary>
/// <remarks>ftfy's mojibake repairs are not reproduced; they only change text that was already broken.</remarks>
internal sealed partial class ClipTextNormalizer : Normalizer
{
    /// <summary>The shared instance (the normaliser has no state).</summary>
    public static ClipTextNormalizer Instance { get; } = new();

    /// <inheritdoc/>
    public override string Normalize(string original)
    {
        ArgumentNullException.ThrowIfNull(original);
        var text = original.IsNormalized(NormalizationForm.FormC) ? original : original.Normalize(NormalizationForm.FormC);
        text = WebUtility.HtmlDecode(WebUtility.HtmlDecode(text));
        return WhiteSpace().Replace(text, " ").Trim().ToLowerInvariant();
    }

    /// <inheritdoc/>
    public override string Normalize(ReadOnlySpan<char> original) => Normalize(original.ToString());

    [GeneratedRegex(@"\s+")]
    private static partial Regex WhiteSpace();
}
