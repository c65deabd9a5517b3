using System.IO.Compression;
using System.Text;
using System.Text.Json;

namespace Microsoft.ML.TaskVectors.Tests.Text;

/// <summary>
/// A small CLIP-style BPE vocabulary written in both formats: OpenAI's gzipped merges and Hugging Face's
/// vocab.json + merges.txt. Ids (OpenAI order): 0–255 the byte characters, 256–511 the same with
/// "&lt;/w&gt;", 512–525 the merges below in rank order, 526 start, 527 end.
/// </summary>
internal static class TestBpeFiles
{
    /// <summary>Fourteen merges, rank = index; merge r creates token 512 + r.</summary>
    public static readonly string[] Merges =
    [
        "i t</w>",      // 512 it</w>
        "' s</w>",      // 513 's</w>
        "o f</w>",      // 514 of</w>
        "p h",          // 515 ph
        "o t",          // 516 ot
        "ot o</w>",     // 517 oto</w>
        "ph oto</w>",   // 518 photo</w>
        "c a",          // 519 ca
        "ca t</w>",     // 520 cat</w>
        "Ã ©</w>",      // 521 é</w> as its UTF-8 bytes C3 A9
        "f Ã©</w>",     // 522
        "ca fÃ©</w>",   // 523 café</w>
        "t h",          // 524 th
        "th e</w>",     // 525 the</w>
    ];

    public const int StartOfText = 526;
    public const int EndOfText = 527;
    public const int VocabularySize = 528;

    /// <summary>GPT-2's bytes_to_unicode, written out here independently of the library: printable bytes keep their character, the rest move to U+0100 onwards.</summary>
    public static IReadOnlyList<char> ByteCharacters()
    {
        var printable = Enumerable.Range(33, 126 - 33 + 1).Concat(Enumerable.Range(161, 172 - 161 + 1)).Concat(Enumerable.Range(174, 255 - 174 + 1)).ToList();
        var chars = printable.Select(b => (char)b).ToList();
        var others = Enumerable.Range(0, 256).Except(printable).ToList();
        chars.AddRange(others.Select((b, n) => (char)(256 + n)));
        return chars;
    }

    /// <summary>The vocabulary in id order, as OpenAI's simple_tokenizer builds it.</summary>
    public static List<string> Vocabulary(IEnumerable<string>? merges = null)
    {
        var bytes = ByteCharacters();
        var vocab = bytes.Select(c => c.ToString()).ToList();
        vocab.AddRange(bytes.Select(c => c + "</w>"));
        vocab.AddRange((merges ?? Merges).Select(m => m.Replace(" ", "")));
        vocab.Add("<|startoftext|>");
        vocab.Add("<|endoftext|>");
        return vocab;
    }

    /// <summary>Writes vocab.json + merges.txt into a sub-folder; ids are mapped through <paramref name="idOf"/> when given.</summary>
    public static string WriteHuggingFace(TempDirectory dir, string folder = "hf", Func<int, int>? idOf = null, IEnumerable<string>? merges = null)
    {
        var path = Path.Combine(dir.Path, folder);
        Directory.CreateDirectory(path);
        var vocab = Vocabulary(merges);
        var map = new Dictionary<string, int>();
        // Written in reverse order so the file's key order is not the id order.
        for (int id = vocab.Count - 1; id >= 0; id--) map[vocab[id]] = idOf?.Invoke(id) ?? id;
        File.WriteAllText(Path.Combine(path, "vocab.json"), JsonSerializer.Serialize(map), Encoding.UTF8);
        File.WriteAllText(Path.Combine(path, "merges.txt"), "#version: 0.2\n" + string.Join("\n", merges ?? Merges) + "\n", Encoding.UTF8);
        return path;
    }

    /// <summary>Writes bpe_simple_vocab_16e6.txt.gz into a sub-folder.</summary>
    public static string WriteOpenAI(TempDirectory dir, string folder = "openai", IEnumerable<string>? lines = null)
    {
        var path = Path.Combine(dir.Path, folder);
        Directory.CreateDirectory(path);
        var text = "#version: 0.2\n" + string.Join("\n", lines ?? Merges) + "\n";
        WriteGzip(Path.Combine(path, "bpe_simple_vocab_16e6.txt.gz"), text);
        return path;
    }

    public static void WriteGzip(string file, string text)
    {
        using var stream = File.Create(file);
        using var gzip = new GZipStream(stream, CompressionLevel.Fastest);
        var bytes = Encoding.UTF8.GetBytes(text);
        gzip.Write(bytes);
    }
}
