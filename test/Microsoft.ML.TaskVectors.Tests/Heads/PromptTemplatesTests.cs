using Microsoft.ML.TaskVectors.Heads;

namespace Microsoft.ML.TaskVectors.Tests.Heads;

public class PromptTemplatesTests
{
    [TestCase("Cars", 8)]
    [TestCase("DTD", 8)]
    [TestCase("EuroSAT", 3)]
    [TestCase("GTSRB", 3)]
    [TestCase("MNIST", 1)]
    [TestCase("RESISC45", 18)]
    [TestCase("SUN397", 2)]
    [TestCase("SVHN", 1)]
    public void EachDatasetHasTheRepositoriesTemplateCount(string name, int count)
    {
        var templates = PromptTemplates.For(name);
        Assert.That(templates, Has.Count.EqualTo(count));
        Assert.That(templates, Is.Unique);
        Assert.That(templates, Has.All.Contains("{0}"));
    }

    [Test]
    public void NamesAreTheEightTasks() =>
        Assert.That(PromptTemplates.Names, Is.EquivalentTo(new[] { "Cars", "DTD", "EuroSAT", "GTSRB", "MNIST", "RESISC45", "SUN397", "SVHN" }));

    [Test]
    public void TemplatesMatchThePythonLambdas()
    {
        Assert.That(PromptTemplates.Apply(PromptTemplates.For("Cars")[3], "bmw m3"), Is.EqualTo("i love my bmw m3!"));
        Assert.That(PromptTemplates.Apply(PromptTemplates.For("GTSRB")[0], "stop"), Is.EqualTo("a zoomed in photo of a \"stop\" traffic sign."));
        Assert.That(PromptTemplates.Apply(PromptTemplates.For("MNIST")[0], "7"), Is.EqualTo("a photo of the number: \"7\"."));
        Assert.That(PromptTemplates.For("SVHN"), Is.EqualTo(PromptTemplates.For("MNIST")));
        Assert.That(PromptTemplates.For("DTD")[^1], Is.EqualTo("a photo of the {0} object."));
        Assert.That(PromptTemplates.For("RESISC45")[0], Is.EqualTo("satellite imagery of {0}."));
        Assert.That(PromptTemplates.For("RESISC45")[^1], Is.EqualTo("aerial view of the {0}."));
        Assert.That(PromptTemplates.For("EuroSAT")[1], Is.EqualTo("a centered satellite photo of a {0}."));
        Assert.That(PromptTemplates.For("SUN397"), Is.EqualTo(new[] { "a photo of a {0}.", "a photo of the {0}." }));
    }

    [Test]
    public void NamesAreCaseInsensitiveAndValidationSuffixIsIgnored()
    {
        Assert.That(PromptTemplates.For("eurosat"), Is.SameAs(PromptTemplates.For("EuroSAT")));
        Assert.That(PromptTemplates.For("EuroSATVal"), Is.SameAs(PromptTemplates.For("EuroSAT")));
        Assert.That(PromptTemplates.For("resisc45val"), Is.SameAs(PromptTemplates.For("RESISC45")));
    }

    [Test]
    public void UnknownNameListsTheKnownOnes()
    {
        var e = Assert.Throws<KeyNotFoundException>(() => PromptTemplates.For("ImageNet"))!;
        Assert.That(e.Message, Does.Contain("'ImageNet'"));
        foreach (var name in PromptTemplates.Names) Assert.That(e.Message, Does.Contain(name));
        Assert.Throws<ArgumentException>(() => PromptTemplates.For(" "));
    }

    [Test]
    public void DefaultIsASinglePhotoTemplate()
    {
        Assert.That(PromptTemplates.Default, Is.EqualTo(new[] { "a photo of a {0}." }));
        Assert.That(PromptTemplates.Apply(PromptTemplates.Default[0], "cat"), Is.EqualTo("a photo of a cat."));
    }

    [Test]
    public void ApplyReplacesEveryPlaceholderAndLeavesOtherBraces()
    {
        Assert.That(PromptTemplates.Apply("{0} or {0}?", "dog"), Is.EqualTo("dog or dog?"));
        Assert.That(PromptTemplates.Apply("a {0}.", "set {x}"), Is.EqualTo("a set {x}."));
        var e = Assert.Throws<ArgumentException>(() => PromptTemplates.Apply("a photo.", "cat"))!;
        Assert.That(e.Message, Does.Contain("'a photo.'"));
    }

    [Test]
    public void FromFileReadsOneTemplateALine()
    {
        using var dir = new TempDirectory();
        var path = dir.File("templates.txt");
        File.WriteAllText(path, "a photo of a {c}.\r\n\r\nitap of my {0}.\n  a \"{c}\" sign.  \n");
        var templates = PromptTemplates.FromFile(path);
        Assert.That(templates, Is.EqualTo(new[] { "a photo of a {0}.", "itap of my {0}.", "a \"{0}\" sign." }));
        Assert.That(PromptTemplates.Apply(templates[2], "yield"), Is.EqualTo("a \"yield\" sign."));
    }

    [Test]
    public void FromFileRejectsLinesWithoutPlaceholder()
    {
        using var dir = new TempDirectory();
        var path = dir.File("templates.txt");
        File.WriteAllText(path, "a photo of a {c}.\n\na photo of a thing.\n");
        var e = Assert.Throws<InvalidDataException>(() => PromptTemplates.FromFile(path))!;
        Assert.That(e.Message, Does.StartWith(path).And.Contain("line 3").And.Contain("a photo of a thing."));

        File.WriteAllText(path, "\n  \n");
        Assert.That(Assert.Throws<InvalidDataException>(() => PromptTemplates.FromFile(path))!.Message, Does.Contain("no templates"));
        Assert.Throws<FileNotFoundException>(() => PromptTemplates.FromFile(dir.File("missing.txt")));
    }
}
