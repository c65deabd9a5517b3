using System.Text;
using Microsoft.ML.TaskVectors.Text;

namespace Microsoft.ML.TaskVectors.Tests.Text;

/// <summary>Missing and malformed tokenizer files fail with messages naming the file (and line).</summary>
public class ClipTokenizerFileTests
{
    [Test]
    public void FolderWithoutTokenizerFilesListsWhatWasExpected()
    {
        using var dir = new TempDirectory();
        var e = Assert.Throws<FileNotFoundException>(() => ClipTokenizer.FromFolder(dir.Path))!;
        Assert.That(e.Message, Does.Contain(dir.Path));
        Assert.That(e.Message, Does.Contain("vocab.json").And.Contain("merges.txt").And.Contain("bpe_simple_vocab_16e6.txt.gz"));

        File.WriteAllText(dir.File("vocab.json"), "{}");
        e = Assert.Throws<FileNotFoundException>(() => ClipTokenizer.FromFolder(dir.Path))!;
        Assert.That(e.Message, Does.Contain("vocab.json is there but merges.txt is missing"));

        Assert.Throws<DirectoryNotFoundException>(() => ClipTokenizer.FromFolder(dir.File("absent")));
    }

    [Test]
    public void HuggingFaceFilesArePreferredWhenBothFormatsArePresent()
    {
        using var dir = new TempDirectory();
        var folder = TestBpeFiles.WriteHuggingFace(dir, "model", idOf: id => TestBpeFiles.VocabularySize - 1 - id);
        TestBpeFiles.WriteGzip(Path.Combine(folder, ClipTokenizer.OpenAIBpeFileName), "#version: 0.2\n");
        Assert.That(ClipTokenizer.FromFolder(folder).StartOfTextId, Is.EqualTo(1), "ids of vocab.json, not OpenAI's layout");
    }

    [Test]
    public void MissingFileIsNamed()
    {
        using var dir = new TempDirectory();
        var folder = TestBpeFiles.WriteHuggingFace(dir);
        var e = Assert.Throws<FileNotFoundException>(() => ClipTokenizer.FromFiles(Path.Combine(folder, "vocab.json"), dir.File("nope.txt")))!;
        Assert.That(e.FileName, Is.EqualTo(dir.File("nope.txt")));
        Assert.Throws<FileNotFoundException>(() => ClipTokenizer.FromOpenAIFile(dir.File("nope.gz")));
    }

    [Test]
    public void VocabJsonThatIsNotATokenToIdObjectIsRejected()
    {
        using var dir = new TempDirectory();
        var folder = TestBpeFiles.WriteHuggingFace(dir);
        var vocab = Path.Combine(folder, "vocab.json");

        File.WriteAllText(vocab, "[1, 2, 3]");
        Assert.That(Assert.Throws<InvalidDataException>(() => ClipTokenizer.FromFolder(folder))!.Message, Does.StartWith(vocab));

        File.WriteAllText(vocab, "{\"a\": \"one\"}");
        Assert.That(Assert.Throws<InvalidDataException>(() => ClipTokenizer.FromFolder(folder))!.Message, Does.StartWith(vocab));

        File.WriteAllText(vocab, "{}");
        Assert.That(Assert.Throws<InvalidDataException>(() => ClipTokenizer.FromFolder(folder))!.Message, Does.Contain("empty"));
    }

    [Test]
    public void VocabularyWithoutSpecialOrByteTokensIsRejected()
    {
        using var dir = new TempDirectory();
        var folder = TestBpeFiles.WriteHuggingFace(dir);
        var vocab = Path.Combine(folder, "vocab.json");
        void WriteWithout(string token) => File.WriteAllText(vocab, System.Text.Json.JsonSerializer.Serialize(
            TestBpeFiles.Vocabulary().Select((t, id) => (t, id)).Where(p => p.t != token).ToDictionary(p => p.t, p => p.id)));

        WriteWithout("<|endoftext|>");
        var e = Assert.Throws<InvalidDataException>(() => ClipTokenizer.FromFolder(folder))!;
        Assert.That(e.Message, Does.StartWith(vocab).And.Contain("'<|endoftext|>' is missing"));

        // The space byte's end-of-word token (U+0120 'Ġ' + </w>).
        WriteWithout("\u0120</w>");
        e = Assert.Throws<InvalidDataException>(() => ClipTokenizer.FromFolder(folder))!;
        Assert.That(e.Message, Does.StartWith(vocab).And.Contain("'\u0120</w>' (byte 0x20) is missing"));
    }

    [Test]
    public void RepeatedIdsAreRejected()
    {
        using var dir = new TempDirectory();
        var folder = TestBpeFiles.WriteHuggingFace(dir, idOf: id => id == 527 ? 526 : id);
        var e = Assert.Throws<InvalidDataException>(() => ClipTokenizer.FromFolder(folder))!;
        Assert.That(e.Message, Does.Contain("share the id 526"));
    }

    [Test]
    public void MalformedMergesLinesAreNamedByNumber()
    {
        using var dir = new TempDirectory();
        var folder = TestBpeFiles.WriteHuggingFace(dir);
        var merges = Path.Combine(folder, "merges.txt");

        File.WriteAllText(merges, "#version: 0.2\ni t</w>\nc a t\n");
        var e = Assert.Throws<InvalidDataException>(() => ClipTokenizer.FromFolder(folder))!;
        Assert.That(e.Message, Does.StartWith(merges).And.Contain("line 3 is 'c a t'"));

        // "c at" would make "cat", but "at" is not a token.
        File.WriteAllText(merges, "#version: 0.2\ni t</w>\nc at\n");
        e = Assert.Throws<InvalidDataException>(() => ClipTokenizer.FromFolder(folder))!;
        Assert.That(e.Message, Does.StartWith(merges).And.Contain("line 3 merges 'c' and 'at', but 'at' is not in the vocabulary"));

        // Both parts exist, the result does not.
        File.WriteAllText(merges, "#version: 0.2\nx y\n");
        e = Assert.Throws<InvalidDataException>(() => ClipTokenizer.FromFolder(folder))!;
        Assert.That(e.Message, Does.Contain("line 2 merges 'x' and 'y', but 'xy' is not in the vocabulary"));
    }

    [Test]
    public void MergesWithoutVersionLineAndWithWindowsLineEndsLoad()
    {
        using var dir = new TempDirectory();
        var folder = TestBpeFiles.WriteHuggingFace(dir);
        File.WriteAllText(Path.Combine(folder, "merges.txt"), string.Join("\r\n", TestBpeFiles.Merges) + "\r\n");
        var tokenizer = ClipTokenizer.FromFolder(folder);
        Assert.That(tokenizer.Encode("a photo"), Is.EqualTo(new[] { 526, 256 + 64, 518, 527 }));
    }

    [Test]
    public void OpenAIFileThatIsNotGzipIsRejected()
    {
        using var dir = new TempDirectory();
        var path = dir.File(ClipTokenizer.OpenAIBpeFileName);
        File.WriteAllText(path, "#version: 0.2\ni t</w>\n");
        var e = Assert.Throws<InvalidDataException>(() => ClipTokenizer.FromFolder(dir.Path))!;
        Assert.That(e.Message, Does.StartWith(path).And.Contain("gzip"));
    }

    [Test]
    public void OpenAIFileWithABadLineIsNamedByNumber()
    {
        using var dir = new TempDirectory();
        var folder = TestBpeFiles.WriteOpenAI(dir, lines: ["i t</w>", "", "o f</w>"]);
        var e = Assert.Throws<InvalidDataException>(() => ClipTokenizer.FromFolder(folder))!;
        Assert.That(e.Message, Does.Contain(ClipTokenizer.OpenAIBpeFileName).And.Contain("line 3"));

        folder = TestBpeFiles.WriteOpenAI(dir, "unknown", lines: ["i t</w>", "q it</w>s"]);
        e = Assert.Throws<InvalidDataException>(() => ClipTokenizer.FromFolder(folder))!;
        Assert.That(e.Message, Does.Contain("line 3 merges 'q' and 'it</w>s'"));
    }

    [Test]
    public void OpenAIFileWithNoMergesHasOnlyBytesAndSpecialTokens()
    {
        using var dir = new TempDirectory();
        var path = dir.File(ClipTokenizer.OpenAIBpeFileName);
        TestBpeFiles.WriteGzip(path, "#version: 0.2\n");
        var tokenizer = ClipTokenizer.FromOpenAIFile(path);
        Assert.That(tokenizer.VocabularySize, Is.EqualTo(514));
        Assert.That(tokenizer.Encode("hi"), Is.EqualTo(new[] { 512, 71, 256 + 72, 513 }));
    }

    [Test]
    public void HuggingFaceFilesWithUtf8MergesLoad()
    {
        // The merges file holds non-ASCII byte characters; it must be read as UTF-8.
        using var dir = new TempDirectory();
        var folder = TestBpeFiles.WriteHuggingFace(dir);
        Assert.That(File.ReadAllText(Path.Combine(folder, "merges.txt"), Encoding.UTF8), Does.Contain("Ã ©</w>"));
        Assert.That(ClipTokenizer.FromFolder(folder).Encode("café"), Is.EqualTo(new[] { 526, 523, 527 }));
    }
}
