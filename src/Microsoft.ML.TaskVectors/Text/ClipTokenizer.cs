using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.TaskVectors.Text;

/// <summary>
/// CLIP's byte-level BPE tokenizer (OpenAI <c>simple_tokenizer</c>, open_clip <c>tokenize</c>) on
/// Microsoft.ML.Tokenizers: text is cleaned (HTML unescaped, white space collapsed, lower-cased),
/// split with CLIP's pattern, encoded with <c>&lt;/w&gt;</c> marking word ends, and framed by the
/// start- and end-of-text tokens.
/// </summary>
/// <remarks>Instances are immutable and safe to share between threads.</remarks>
public sealed class ClipTokenizer
{
    /// <summary>CLIP's text context: 77 tokens, start and end included.</summary>
    public const int DefaultContextLength = 77;

    /// <summary>Hugging Face's vocabulary file name.</summary>
    public const string VocabFileName = "vocab.json";

    /// <summary>Hugging Face's merges file name.</summary>
    public const string MergesFileName = "merges.txt";

    /// <summary>OpenAI's (and open_clip's) gzipped merges file name.</summary>
    public const string OpenAIBpeFileName = "bpe_simple_vocab_16e6.txt.gz";

    /// <summary>
    /// CLIP's split pattern: the special tokens, English contractions, runs of letters, single digits,
    /// runs of other non-space characters.
    /// </summary>
    public const string SplitPattern =
        @"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

    private const int MaxTextInMessage = 60;

    private readonly BpeTokenizer _bpe;
    private readonly IReadOnlyList<string?> _tokens;
    private readonly HashSet<int> _specialIds;

    private ClipTokenizer(ClipBpeModel model)
    {
        var special = new Dictionary<string, int>
        {
            [ClipBpeModel.StartOfText] = model.StartOfTextId,
            [ClipBpeModel.EndOfText] = model.EndOfTextId,
        };
        _bpe = BpeTokenizer.Create(new BpeOptions(model.Vocabulary)
        {
            Merges = model.Merges,
            SpecialTokens = special,
            Normalizer = ClipTextNormalizer.Instance,
            PreTokenizer = new RegexPreTokenizer(
                new Regex(SplitPattern, RegexOptions.IgnoreCase | RegexOptions.CultureInvariant | RegexOptions.Compiled), special),
            EndOfWordSuffix = ClipBpeModel.EndOfWord,
            ByteLevel = true,
        });
        _tokens = model.Tokens;
        _specialIds = [model.StartOfTextId, model.EndOfTextId];
        StartOfTextId = model.StartOfTextId;
        EndOfTextId = model.EndOfTextId;
    }

    /// <summary>The id of <c>&lt;|startoftext|&gt;</c> (49406 in CLIP's vocabulary).</summary>
    public int StartOfTextId { get; }

    /// <summary>The id of <c>&lt;|endoftext|&gt;</c> (49407 in CLIP's vocabulary).</summary>
    public int EndOfTextId { get; }

    /// <summary>The number of token ids, the largest id plus one (49,408 for CLIP).</summary>
    public int VocabularySize => _tokens.Count;

    /// <summary>
    /// The underlying Microsoft.ML.Tokenizers tokenizer with CLIP's normaliser and pre-tokeniser. It encodes
    /// without the start and end tokens; use <see cref="Encode"/> for CLIP's framing.
    /// </summary>
    public Tokenizer Bpe => _bpe;

    /// <summary>
    /// Loads the tokenizer files of a model folder: Hugging Face's <c>vocab.json</c> + <c>merges.txt</c>, or
    /// OpenAI's <c>bpe_simple_vocab_16e6.txt.gz</c>.
    /// </summary>
    /// <exception cref="FileNotFoundException">The folder holds neither.</exception>
    /// <exception cref="InvalidDataException">A file is malformed; the message names it (and the line).</exception>
    public static ClipTokenizer FromFolder(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"{folder}: no such folder.");
        var vocab = Path.Combine(folder, VocabFileName);
        var merges = Path.Combine(folder, MergesFileName);
        if (File.Exists(vocab) && File.Exists(merges)) return FromFiles(vocab, merges);
        var openAI = Path.Combine(folder, OpenAIBpeFileName);
        if (File.Exists(openAI)) return FromOpenAIFile(openAI);
        var partial = File.Exists(vocab) ? $" ({VocabFileName} is there but {MergesFileName} is missing)"
            : File.Exists(merges) ? $" ({MergesFileName} is there but {VocabFileName} is missing)" : "";
        throw new FileNotFoundException(
            $"{folder}: no CLIP tokenizer files; expected {VocabFileName} + {MergesFileName} (Hugging Face) or {OpenAIBpeFileName} (OpenAI){partial}.",
            folder);
    }

    /// <summary>Loads Hugging Face's <c>vocab.json</c> (token → id) and <c>merges.txt</c> (a <c>#version</c> line, then one pair a line).</summary>
    /// <exception cref="FileNotFoundException">A file is missing.</exception>
    /// <exception cref="InvalidDataException">A file is malformed; the message names it (and the line).</exception>
    public static ClipTokenizer FromFiles(string vocabPath, string mergesPath) =>
        new(ClipBpeModel.FromHuggingFace(vocabPath, mergesPath));

    /// <summary>
    /// Loads OpenAI's <c>bpe_simple_vocab_16e6.txt.gz</c>, building the vocabulary as <c>simple_tokenizer</c>
    /// does: the 256 byte characters, the same with <c>&lt;/w&gt;</c>, the first 48,894 merges joined, then the
    /// start and end tokens.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file is missing.</exception>
    /// <exception cref="InvalidDataException">The file is not gzip, not UTF-8, or has a malformed line.</exception>
    public static ClipTokenizer FromOpenAIFile(string path) => new(ClipBpeModel.FromOpenAI(path));

    /// <summary>Encodes one text: the start token, the text's tokens, the end token; no padding or truncation.</summary>
    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var body = _bpe.EncodeToIds(text);
        var ids = new int[body.Count + 2];
        ids[0] = StartOfTextId;
        for (int i = 0; i < body.Count; i++) ids[i + 1] = body[i];
        ids[^1] = EndOfTextId;
        return ids;
    }

    /// <summary>
    /// Encodes texts into a <c>[texts.Count, contextLength]</c> matrix of ids, each row zero-padded as CLIP's
    /// <c>tokenize</c>. A longer text is cut to its first <c>contextLength − 1</c> tokens followed by the end
    /// token when <paramref name="truncate"/> is true.
    /// </summary>
    /// <exception cref="ArgumentException">A text is too long and <paramref name="truncate"/> is false; the message quotes it.</exception>
    public long[,] EncodeBatch(IReadOnlyList<string> texts, int contextLength = DefaultContextLength, bool truncate = true)
    {
        ArgumentNullException.ThrowIfNull(texts);
        ArgumentOutOfRangeException.ThrowIfLessThan(contextLength, 2);
        var result = new long[texts.Count, contextLength];
        for (int row = 0; row < texts.Count; row++)
        {
            var text = texts[row] ?? throw new ArgumentException($"Text {row} is null.", nameof(texts));
            var ids = Encode(text);
            if (ids.Count > contextLength && !truncate)
                throw new ArgumentException(
                    $"Text {row} (\"{Shorten(text)}\") is {ids.Count} tokens long with its start and end tokens, " +
                    $"more than the context length {contextLength}; shorten it or allow truncation.", nameof(texts));
            int n = Math.Min(ids.Count, contextLength);
            for (int i = 0; i < n; i++) result[row, i] = ids[i];
            // open_clip: tokens[:context_length], then the last one replaced by the end token.
            if (ids.Count > contextLength) result[row, contextLength - 1] = EndOfTextId;
        }
        return result;
    }

    /// <summary>
    /// Turns ids back into text as CLIP's <c>decode</c> does: special tokens dropped, byte characters turned back
    /// into UTF-8, every <c>&lt;/w&gt;</c> into a space, the result trimmed. Text comes back cleaned and
    /// lower-cased, with a space before punctuation ("a cat ." for "A cat.").
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is not in the vocabulary.</exception>
    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var bytes = new List<byte>();
        foreach (var id in ids)
        {
            if (_specialIds.Contains(id)) continue;
            var token = (uint)id < (uint)_tokens.Count ? _tokens[id] : null;
            if (token is null)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"Token id {id} is not in the vocabulary ({VocabularySize} ids).");
            foreach (var c in token)
            {
                // Only a corrupt vocabulary has characters outside the alphabet; keep them as UTF-8.
                if (ByteLevelAlphabet.TryGetByte(c, out var b)) bytes.Add(b);
                else bytes.AddRange(Encoding.UTF8.GetBytes(c.ToString()));
            }
        }
        return Encoding.UTF8.GetString(bytes.ToArray()).Replace(ClipBpeModel.EndOfWord, " ", StringComparison.Ordinal).Trim();
    }

    private static string Shorten(string text) =>
        text.Length <= MaxTextInMessage ? text : string.Concat(text.AsSpan(0, MaxTextInMessage), "…");
}
