using Microsoft.ML.TaskVectors.Text;

namespace Microsoft.ML.TaskVectors.Tests.Text;

/// <summary>
/// Encoding against ids worked out by hand from <see cref="TestBpeFiles"/>. Byte character ids: printable
/// ASCII c has id c − 33 ('a' 64, 'h' 71, '.' 13, '&amp;' 5, '0' 15); with "&lt;/w&gt;" add 256.
/// </summary>
public class ClipTokenizerTests
{
    private const int Sot = TestBpeFiles.StartOfText, Eot = TestBpeFiles.EndOfText;
    private const int A = 256 + 64;       // a</w>
    private const int Photo = 518, Of = 514, Cat = 520, The = 525, It = 512, ApostropheS = 513, Cafe = 523;
    private const int Period = 256 + 13;  // .</w>

    private TempDirectory _dir = null!;
    private string _folder = null!;
    private ClipTokenizer _tokenizer = null!;

    [OneTimeSetUp]
    public void Load()
    {
        _dir = new TempDirectory();
        _folder = TestBpeFiles.WriteHuggingFace(_dir);
        _tokenizer = ClipTokenizer.FromFolder(_folder);
    }

    [OneTimeTearDown]
    public void Clean() => _dir.Dispose();

    private int[] Body(string text)
    {
        var ids = _tokenizer.Encode(text);
        Assert.That(ids[0], Is.EqualTo(Sot), "starts with <|startoftext|>");
        Assert.That(ids[^1], Is.EqualTo(Eot), "ends with <|endoftext|>");
        return ids.Skip(1).Take(ids.Count - 2).ToArray();
    }

    [Test]
    public void SpecialIdsAndSizeComeFromTheVocabulary()
    {
        Assert.That(_tokenizer.StartOfTextId, Is.EqualTo(526));
        Assert.That(_tokenizer.EndOfTextId, Is.EqualTo(527));
        Assert.That(_tokenizer.VocabularySize, Is.EqualTo(528));
        Assert.That(_tokenizer.Encode(""), Is.EqualTo(new[] { Sot, Eot }));
    }

    [Test]
    public void PlainWordsMergeByRank()
    {
        // photo: p h o t o</w> → ph o t o</w> (rank 3) → ph ot o</w> (4) → ph oto</w> (5) → photo</w> (6)
        Assert.That(_tokenizer.Encode("a photo of a cat."), Is.EqualTo(new[] { Sot, A, Photo, Of, A, Cat, Period, Eot }));
        Assert.That(Body("the"), Is.EqualTo(new[] { The }));
        // "o t" (rank 4) beats the overlapping "t h" (rank 12): ot h e</w>, not o the</w>.
        Assert.That(Body("othe"), Is.EqualTo(new[] { 516, 71, 256 + 68 }));
        // No merge applies: one id per byte, the last with </w>.
        Assert.That(Body("hi"), Is.EqualTo(new[] { 71, 256 + 72 }));
    }

    [Test]
    public void ContractionsSplitOff()
    {
        Assert.That(Body("it's"), Is.EqualTo(new[] { It, ApostropheS }));
        Assert.That(Body("IT'S"), Is.EqualTo(new[] { It, ApostropheS }), "lower-cased first");
        // 'll is its own piece: ' l l</w> (ids 6, 75, 256 + 75), no merges.
        Assert.That(Body("it'll"), Is.EqualTo(new[] { It, 6, 75, 256 + 75 }));
    }

    [Test]
    public void DigitsSplitOneByOne()
    {
        // '2' = 50 → 17, '0' → 15, '4' → 19; each digit is its own word, so each ends with </w>.
        Assert.That(Body("2024"), Is.EqualTo(new[] { 256 + 17, 256 + 15, 256 + 17, 256 + 19 }));
    }

    [Test]
    public void PunctuationRunsAreOneWord()
    {
        // "hi!!!" → "hi", "!!!"; '!' is id 0.
        Assert.That(Body("hi!!!"), Is.EqualTo(new[] { 71, 256 + 72, 0, 0, 256 }));
        // '(' 40 → 7, ')' 41 → 8
        Assert.That(Body("(cat)"), Is.EqualTo(new[] { 256 + 7, Cat, 256 + 8 }));
    }

    [Test]
    public void NonAsciiIsEncodedByteByByte()
    {
        // é = C3 A9 → 'Ã' (id 127) and '©' (id 102); merged to café</w> by ranks 7, 9, 10, 11.
        Assert.That(Body("café"), Is.EqualTo(new[] { Cafe }));
        Assert.That(Body("CAFÉ"), Is.EqualTo(new[] { Cafe }), "É lower-cases to é");
        Assert.That(Body("cafe\u0301"), Is.EqualTo(new[] { Cafe }), "e + combining acute composes to é (NFC)");
        // ü = C3 BC → 'Ã' 127 and '¼' (id 106 + 188 − 174 = 120) + </w>
        Assert.That(Body("ü"), Is.EqualTo(new[] { 127, 256 + 120 }));
        // 😀 = F0 9F 98 80: F0 → 106 + (240 − 174) = 172; 9F, 98, 80 are moved bytes 221 + (b − 127).
        Assert.That(Body("😀"), Is.EqualTo(new[] { 172, 221 + 32, 221 + 25, 256 + 221 + 1 }));
    }

    [Test]
    public void HtmlEntitiesAreUnescapedTwice()
    {
        // "&amp;amp;" → "&amp;" → "&"; '&' is id 5.
        Assert.That(Body("cat &amp;amp; the"), Is.EqualTo(new[] { Cat, 256 + 5, The }));
        Assert.That(Body("&lt;"), Is.EqualTo(new[] { 256 + 27 }), "'<' is id 27");
        Assert.That(Body("it&#39;s"), Is.EqualTo(new[] { It, ApostropheS }));
    }

    [Test]
    public void WhiteSpaceCollapsesAndTrims()
    {
        Assert.That(Body("  A\tPHOTO \n\n of  "), Is.EqualTo(new[] { A, Photo, Of }));
        Assert.That(Body(" \t\n "), Is.Empty);
    }

    [Test]
    public void SpecialTokensInTheTextMapToTheirIds()
    {
        Assert.That(_tokenizer.Encode("a <|endoftext|> cat"), Is.EqualTo(new[] { Sot, A, Eot, Cat, Eot }));
        Assert.That(_tokenizer.Encode("a<|STARTOFTEXT|>cat"), Is.EqualTo(new[] { Sot, A, Sot, Cat, Eot }));
    }

    [Test]
    public void BatchRowsAreZeroPadded()
    {
        var batch = _tokenizer.EncodeBatch(["a cat", "it's the cat"], contextLength: 8);
        Assert.That(batch.GetLength(0), Is.EqualTo(2));
        Assert.That(batch.GetLength(1), Is.EqualTo(8));
        Assert.That(Row(batch, 0), Is.EqualTo(new long[] { Sot, A, Cat, Eot, 0, 0, 0, 0 }));
        Assert.That(Row(batch, 1), Is.EqualTo(new long[] { Sot, It, ApostropheS, The, Cat, Eot, 0, 0 }));
        Assert.That(_tokenizer.EncodeBatch([]).GetLength(0), Is.EqualTo(0));
        Assert.That(_tokenizer.EncodeBatch(["a"]).GetLength(1), Is.EqualTo(77), "CLIP's context by default");
    }

    [Test]
    public void TruncationKeepsTheFirstTokensAndEndsWithTheEndToken()
    {
        string[] text = ["a photo of a cat."];   // 8 tokens with start and end
        Assert.That(Row(_tokenizer.EncodeBatch(text, 8), 0), Is.EqualTo(new long[] { Sot, A, Photo, Of, A, Cat, Period, Eot }));
        Assert.That(Row(_tokenizer.EncodeBatch(text, 5), 0), Is.EqualTo(new long[] { Sot, A, Photo, Of, Eot }));
        Assert.That(Row(_tokenizer.EncodeBatch(text, 2), 0), Is.EqualTo(new long[] { Sot, Eot }));
    }

    [Test]
    public void OverlongTextWithoutTruncationNamesTheTextAndItsLength()
    {
        var e = Assert.Throws<ArgumentException>(() => _tokenizer.EncodeBatch(["a cat", "a photo of a cat."], 5, truncate: false))!;
        Assert.That(e.Message, Does.Contain("Text 1"));
        Assert.That(e.Message, Does.Contain("\"a photo of a cat.\""));
        Assert.That(e.Message, Does.Contain("8 tokens"));
        Assert.That(e.Message, Does.Contain("context length 5"));

        var longText = string.Join(" ", Enumerable.Repeat("photo", 30));
        e = Assert.Throws<ArgumentException>(() => _tokenizer.EncodeBatch([longText], 10, truncate: false))!;
        Assert.That(e.Message, Does.Contain("32 tokens"));
        Assert.That(e.Message, Does.Contain(longText[..60] + "…"));
        Assert.That(e.Message, Does.Not.Contain(longText));
    }

    [Test]
    public void ContextLengthBelowTwoIsRejected() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => _tokenizer.EncodeBatch(["a"], 1));

    [Test]
    public void DecodeDropsSpecialTokensAndTurnsWordEndsIntoSpaces()
    {
        Assert.That(_tokenizer.Decode(_tokenizer.Encode("a photo of the cat")), Is.EqualTo("a photo of the cat"));
        // CLIP's decode: cleaned, lower-cased, a space before punctuation and split contractions.
        Assert.That(_tokenizer.Decode(_tokenizer.Encode("  A photo of a CAFÉ.")), Is.EqualTo("a photo of a café ."));
        Assert.That(_tokenizer.Decode(_tokenizer.Encode("it's 2024")), Is.EqualTo("it 's 2 0 2 4"));
        Assert.That(_tokenizer.Decode(_tokenizer.Encode("😀 über (cat)")), Is.EqualTo("😀 über ( cat )"));
        Assert.That(_tokenizer.Decode([Sot, Eot]), Is.Empty);
        // Ids inside a word join without a space: p h → "ph"
        Assert.That(_tokenizer.Decode([79, 71]), Is.EqualTo("ph"));
    }

    [Test]
    public void DecodeOfAnUnknownIdThrows()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => _tokenizer.Decode([A, 5000]))!;
        Assert.That(e.Message, Does.Contain("5000"));
    }

    [Test]
    public void OpenAIAndHuggingFaceFilesGiveTheSameIds()
    {
        using var dir = new TempDirectory();
        var openAI = ClipTokenizer.FromFolder(TestBpeFiles.WriteOpenAI(dir));
        var hf = ClipTokenizer.FromFiles(Path.Combine(TestBpeFiles.WriteHuggingFace(dir), "vocab.json"), Path.Combine(dir.Path, "hf", "merges.txt"));
        Assert.That(openAI.StartOfTextId, Is.EqualTo(hf.StartOfTextId).And.EqualTo(Sot));
        Assert.That(openAI.EndOfTextId, Is.EqualTo(hf.EndOfTextId).And.EqualTo(Eot));
        Assert.That(openAI.VocabularySize, Is.EqualTo(hf.VocabularySize).And.EqualTo(TestBpeFiles.VocabularySize));
        foreach (var text in new[] { "a photo of a cat.", "it's the café!", "2024 😀 &amp; ü", "othe photo <|endoftext|>" })
        {
            Assert.That(openAI.Encode(text), Is.EqualTo(hf.Encode(text)), text);
            Assert.That(openAI.Decode(openAI.Encode(text)), Is.EqualTo(hf.Decode(hf.Encode(text))), text);
        }
    }

    [Test]
    public void HuggingFaceIdsAreTakenFromVocabJson()
    {
        using var dir = new TempDirectory();
        int Reverse(int id) => TestBpeFiles.VocabularySize - 1 - id;
        var reversed = ClipTokenizer.FromFolder(TestBpeFiles.WriteHuggingFace(dir, idOf: Reverse));
        Assert.That(reversed.StartOfTextId, Is.EqualTo(1));
        Assert.That(reversed.EndOfTextId, Is.EqualTo(0));
        var text = "it's a photo of the café.";
        Assert.That(reversed.Encode(text), Is.EqualTo(_tokenizer.Encode(text).Select(Reverse)));
        Assert.That(reversed.Decode(reversed.Encode(text)), Is.EqualTo("it 's a photo of the café ."));
    }

    [Test]
    public void OpenAIKeepsTheFirst48894MergesAndGivesClipsSpecialIds()
    {
        // 48,894 distinct merges of two byte characters, then lines OpenAI never reads (not even valid merges).
        var chars = TestBpeFiles.ByteCharacters();
        var lines = new List<string>();
        for (int i = 0; i < 48894; i++) lines.Add($"{chars[i / 256]} {chars[i % 256]}");
        lines.Add("this line has four parts");
        lines.Add("unknown tokens");
        using var dir = new TempDirectory();
        var tokenizer = ClipTokenizer.FromOpenAIFile(Path.Combine(TestBpeFiles.WriteOpenAI(dir, lines: lines), ClipTokenizer.OpenAIBpeFileName));
        Assert.That(tokenizer.StartOfTextId, Is.EqualTo(49406));
        Assert.That(tokenizer.EndOfTextId, Is.EqualTo(49407));
        Assert.That(tokenizer.VocabularySize, Is.EqualTo(49408));
        // "!!$" is one word ! ! $</w>: merge 0 is "! !" (→ id 512); no merge has $</w> ('$' is id 3).
        Assert.That(tokenizer.Encode("!!$"), Is.EqualTo(new[] { 49406, 512, 256 + 3, 49407 }));
    }

    [Test]
    public void ConcurrentEncodingMatchesSequentialEncoding()
    {
        var texts = Enumerable.Range(0, 400)
            .Select(i => $"A photo of {i} {(i % 3 == 0 ? "cafés" : "cats")}, it's the {new string('o', 1 + i % 25)}th!")
            .ToArray();
        var expected = texts.Select(t => _tokenizer.Encode(t).ToArray()).ToArray();
        var cold = ClipTokenizer.FromFolder(_folder);   // an empty merge cache, filled from many threads at once
        var actual = new int[texts.Length][];
        Parallel.For(0, texts.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i => actual[i] = cold.Encode(texts[i]).ToArray());
        Assert.That(actual, Is.EqualTo(expected));
    }

    private static long[] Row(long[,] batch, int row) =>
        Enumerable.Range(0, batch.GetLength(1)).Select(i => batch[row, i]).ToArray();
}
