using System.IO.Compression;
using System.Text;
using System.Text.Json;

namespace Microsoft.ML.TaskVectors.Text;

/// <summary>
/// A CLIP BPE vocabulary and its ranked merges, read from Hugging Face's <c>vocab.json</c> +
/// <c>merges.txt</c> or OpenAI's <c>bpe_simple_vocab_16e6.txt.gz</c>, and checked so that encoding can
/// neither drop a character silently nor fail inside Microsoft.ML.Tokenizers.
/// </summary>
internal sealed class ClipBpeModel
{
    /// <summary>The end-of-word marker CLIP appends to the last symbol of every word.</summary>
    public const string EndOfWord = "</w>";

    /// <summary>The start-of-text token.</summary>
    public const string StartOfText = "<|startoftext|>";

    /// <summary>The end-of-text token.</summary>
    public const string EndOfText = "<|endoftext|>";

    /// <summary>
    /// How many merges OpenAI's <c>simple_tokenizer</c> keeps: <c>merges[1:49152-256-2+1]</c>, so that
    /// 256 bytes × 2 + merges + 2 special tokens make 49,408 tokens.
    /// </summary>
    public const int OpenAIMergeCount = 49152 - 256 - 2;

    private ClipBpeModel(Dictionary<string, int> vocabulary, List<string> merges, string?[] tokens)
    {
        Vocabulary = vocabulary;
        Merges = merges;
        Tokens = tokens;
        StartOfTextId = vocabulary[StartOfText];
        EndOfTextId = vocabulary[EndOfText];
    }

    /// <summary>Token to id.</summary>
    public IReadOnlyDictionary<string, int> Vocabulary { get; }

    /// <summary>The merges in rank order, each "left right".</summary>
    public IReadOnlyList<string> Merges { get; }

    /// <summary>Id to token; null where no token has the id.</summary>
    public IReadOnlyList<string?> Tokens { get; }

    /// <summary>The id of <see cref="StartOfText"/>.</summary>
    public int StartOfTextId { get; }

    /// <summary>The id of <see cref="EndOfText"/>.</summary>
    public int EndOfTextId { get; }

    /// <summary>Reads a Hugging Face <c>vocab.json</c> (token → id) and <c>merges.txt</c> (optional <c>#version</c> line, then one "left right" pair a line).</summary>
    public static ClipBpeModel FromHuggingFace(string vocabPath, string mergesPath)
    {
        RequireFile(vocabPath);
        RequireFile(mergesPath);

        Dictionary<string, int>? vocabulary;
        try
        {
            using var stream = File.OpenRead(vocabPath);
            vocabulary = JsonSerializer.Deserialize<Dictionary<string, int>>(stream);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{vocabPath}: not a JSON object of token → integer id ({e.Message}).", e);
        }
        if (vocabulary is null || vocabulary.Count == 0)
            throw new InvalidDataException($"{vocabPath}: the vocabulary is empty; a JSON object of token → integer id was expected.");

        var tokens = TokensById(vocabulary, vocabPath);

        var merges = new List<string>();
        var lines = new List<int>();
        int lineNumber = 0;
        foreach (var line in File.ReadLines(mergesPath, Encoding.UTF8))
        {
            lineNumber++;
            if (lineNumber == 1 && line.StartsWith("#version", StringComparison.Ordinal)) continue;
            if (line.Length == 0) continue;
            var parts = line.Split(' ');
            if (parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0)
                throw new InvalidDataException($"{mergesPath}: line {lineNumber} is '{line}'; two tokens separated by one space were expected.");
            merges.Add(line);
            lines.Add(lineNumber);
        }

        CheckMerges(vocabulary, merges, lines, mergesPath);
        CheckRequiredTokens(vocabulary, vocabPath);
        return new ClipBpeModel(vocabulary, merges, tokens);
    }

    /// <summary>
    /// Reads OpenAI's gzipped merges file and builds the vocabulary exactly as <c>simple_tokenizer</c> does:
    /// the 256 byte characters, the same with <c>&lt;/w&gt;</c>, each kept merge joined, then the two special tokens.
    /// </summary>
    public static ClipBpeModel FromOpenAI(string path)
    {
        RequireFile(path);
        string text;
        try
        {
            using var file = File.OpenRead(path);
            using var gzip = new GZipStream(file, CompressionMode.Decompress);
            using var reader = new StreamReader(gzip, new UTF8Encoding(false, throwOnInvalidBytes: true));
            text = reader.ReadToEnd();
        }
        catch (Exception e) when (e is InvalidDataException or DecoderFallbackException)
        {
            throw new InvalidDataException($"{path}: not a gzip-compressed UTF-8 merges file ({e.Message}).", e);
        }
        return FromOpenAIText(text, path);
    }

    /// <summary>Builds the OpenAI vocabulary from the decompressed text of the merges file.</summary>
    internal static ClipBpeModel FromOpenAIText(string text, string source)
    {
        var lines = text.Split('\n');
        // OpenAI keeps lines [1, 1 + 48,894): line 0 is "#version: 0.2", later lines are unused.
        int end = Math.Min(lines.Length, 1 + OpenAIMergeCount);
        // A short file's final newline leaves empty lines at the end; they are not merges.
        while (end > 1 && string.IsNullOrWhiteSpace(lines[end - 1])) end--;

        var merges = new List<string>(Math.Max(0, end - 1));
        var lineNumbers = new List<int>(merges.Capacity);
        for (int i = 1; i < end; i++)
        {
            var parts = lines[i].Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length != 2)
                throw new InvalidDataException($"{source}: line {i + 1} is '{lines[i].TrimEnd('\r')}'; two tokens separated by white space were expected.");
            merges.Add(parts[0] + " " + parts[1]);
            lineNumbers.Add(i + 1);
        }

        var list = new List<string>(512 + merges.Count + 2);
        list.AddRange(ByteLevelAlphabet.Characters.Select(c => c.ToString()));
        list.AddRange(ByteLevelAlphabet.Characters.Select(c => c + EndOfWord));
        list.AddRange(merges.Select(m => m.Replace(" ", "", StringComparison.Ordinal)));
        list.Add(StartOfText);
        list.Add(EndOfText);

        // dict(zip(vocab, range(len(vocab)))): a repeated token keeps its last id, as in Python.
        var vocabulary = new Dictionary<string, int>(list.Count, StringComparer.Ordinal);
        for (int id = 0; id < list.Count; id++) vocabulary[list[id]] = id;

        CheckMerges(vocabulary, merges, lineNumbers, source);
        return new ClipBpeModel(vocabulary, merges, list.ToArray());
    }

    private static void RequireFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file.", path);
    }

    private static string?[] TokensById(Dictionary<string, int> vocabulary, string source)
    {
        int max = -1;
        foreach (var (token, id) in vocabulary)
        {
            if (id < 0) throw new InvalidDataException($"{source}: token '{token}' has the negative id {id}.");
            max = Math.Max(max, id);
        }
        if (max >= 10_000_000)
            throw new InvalidDataException($"{source}: the largest id is {max}; ids must be below 10,000,000.");
        var tokens = new string?[max + 1];
        foreach (var (token, id) in vocabulary)
        {
            if (tokens[id] is { } other)
                throw new InvalidDataException($"{source}: tokens '{other}' and '{token}' share the id {id}; ids must be unique.");
            tokens[id] = token;
        }
        return tokens;
    }

    private static void CheckMerges(Dictionary<string, int> vocabulary, List<string> merges, List<int> lineNumbers, string source)
    {
        for (int i = 0; i < merges.Count; i++)
        {
            var space = merges[i].IndexOf(' ');
            var left = merges[i][..space];
            var right = merges[i][(space + 1)..];
            foreach (var token in new[] { left, right, left + right })
            {
                if (!vocabulary.ContainsKey(token))
                    throw new InvalidDataException(
                        $"{source}: line {lineNumbers[i]} merges '{left}' and '{right}', but '{token}' is not in the vocabulary.");
            }
        }
    }

    private static void CheckRequiredTokens(Dictionary<string, int> vocabulary, string source)
    {
        foreach (var special in new[] { StartOfText, EndOfText })
        {
            if (!vocabulary.ContainsKey(special))
                throw new InvalidDataException($"{source}: the special token '{special}' is missing from the vocabulary.");
        }
        // Without every byte, Microsoft.ML.Tokenizers would drop unknown characters silently.
        foreach (var c in ByteLevelAlphabet.Characters)
        {
            foreach (var token in new[] { c.ToString(), c + EndOfWord })
            {
                if (!vocabulary.ContainsKey(token))
                    throw new InvalidDataException(
                        $"{source}: the byte-level token '{token}' (byte 0x{(ByteLevelAlphabet.TryGetByte(c, out var b) ? b : 0):X2}) is missing; " +
                        "a CLIP vocabulary holds every byte with and without '</w>'.");
            }
        }
    }
}
