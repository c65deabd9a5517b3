using Microsoft.ML.TaskVectors.Heads;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Tests.Models;
using Microsoft.ML.TaskVectors.Tests.Text;
using Microsoft.ML.TaskVectors.Text;
using static Microsoft.ML.TaskVectors.Tests.Heads.ClassificationHeadTests;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Heads;

public class ZeroShotHeadTests
{
    private static readonly string[] Classes = ["cat", "café", "photo"];
    private static readonly string[] Templates = ["a photo of a {0}.", "i love the {0}!"];

    private TempDirectory _dir = null!;
    private ClipTokenizer _tokenizer = null!;
    private ClipModel _model = null!;

    [OneTimeSetUp]
    public void SetUp()
    {
        _dir = new TempDirectory();
        _tokenizer = ClipTokenizer.FromFolder(TestBpeFiles.WriteHuggingFace(_dir));
        _model = ClipModel.CreateRandom(TinyClipForTestVocabulary(), seed: 7);
    }

    [OneTimeTearDown]
    public void TearDown()
    {
        _model.Dispose();
        _dir.Dispose();
    }

    [Test]
    public void Logits_TwoClassesIn2D_MatchHandComputedValues()
    {
        using var scope = NewDisposeScope();
        // Rows normalise to (0.6, 0.8) and (0, 1); the multiplier is exp(ln 100) = 100.
        using var head = new ZeroShotHead(tensor(new float[,] { { 3, 4 }, { 0, 2 } }), Math.Log(100), ["dog", "cat"]);
        Assert.That(Values(head.ClassEmbeddings), Is.EqualTo(new[] { 0.6, 0.8, 0, 1 }).Within(1e-6));
        Assert.That(head.Scale, Is.EqualTo(100).Within(1e-4));

        // (1,0) → cos (0.6, 0); (0,5) → (0.8, 1); (−2,0) → (−0.6, 0); a zero embedding gives zero logits, not NaN.
        var embeds = tensor(new float[,] { { 1, 0 }, { 0, 5 }, { -2, 0 }, { 0, 0 } });
        var logits = head.Logits(embeds);

        Assert.That(logits.shape, Is.EqualTo(new long[] { 4, 2 }));
        Assert.That(Values(logits), Is.EqualTo(new[] { 60, 0, 80, 100, -60, 0, 0, 0 }).Within(1e-3));
        Assert.That(head.Predict(embeds).data<long>().ToArray(), Is.EqualTo(new long[] { 0, 1, 1, 0 }));
        Assert.That(head.Kind, Is.EqualTo(ClassificationHeadKind.ZeroShot));
        Assert.That(head.ClassNames, Is.EqualTo(new[] { "dog", "cat" }));
        Assert.That(head.EmbeddingDim, Is.EqualTo(2));
        Assert.That(head.Templates, Is.Empty);
    }

    [Test]
    public void Logits_PassGradientToTheEmbeddingsOnly()
    {
        using var scope = NewDisposeScope();
        using var head = new ZeroShotHead(tensor(new float[,] { { 1, 0 }, { 0, 1 } }), 0, ["a", "b"]);
        var e = tensor(new float[,] { { 3, 4 } }, requires_grad: true);
        head.Logits(e)[0, 0].backward();
        // d/de of e₀/‖e‖ at (3, 4): (1/‖e‖ − e₀²/‖e‖³, −e₀e₁/‖e‖³) = (0.2 − 0.072, −0.096).
        Assert.That(Values(e.grad!), Is.EqualTo(new[] { 0.128, -0.096 }).Within(1e-6));
        Assert.That(head.ClassEmbeddings.requires_grad, Is.False);
    }

    [Test]
    public void Build_MatchesAnIndependentComputation()
    {
        using var scope = NewDisposeScope();
        var progress = new ListProgress();
        // Batches of 4 over 6 prompts: the first batch ends in the middle of the second class.
        using var head = ZeroShotHead.Build(_model, _tokenizer, Classes, Templates, batchSize: 4, progress);

        var expected = ReferenceClassEmbeddings(Classes, Templates);
        Assert.That(head.ClassEmbeddings.shape, Is.EqualTo(new long[] { 3, 12 }));
        Assert.That(head.ClassEmbeddings.allclose(expected, rtol: 1e-4, atol: 1e-5), Is.True);
        Assert.That(head.LogitScale, Is.EqualTo(_model.LogitScale.item<float>()));
        Assert.That(head.Templates, Is.EqualTo(Templates));
        Assert.That(head.ClassNames, Is.EqualTo(Classes));
        Assert.That(progress.Reports, Is.EqualTo(new[] { 0, 4.0 / 6, 1 }).Within(1e-12));

        // Logits against exp(logit_scale)·cos computed here.
        var embeds = randn(5, 12, generator: new TorchSharp.torch.Generator(3));
        var unit = embeds / embeds.norm(1, keepdim: true);
        var expectedLogits = Math.Exp(head.LogitScale) * unit.matmul(expected.t());
        Assert.That(head.Logits(embeds).allclose(expectedLogits, rtol: 1e-4, atol: 1e-4), Is.True);
    }

    [Test]
    public void Build_BatchSizeDoesNotChangeTheResult()
    {
        using var scope = NewDisposeScope();
        using var one = ZeroShotHead.Build(_model, _tokenizer, Classes, Templates, batchSize: 1);
        using var all = ZeroShotHead.Build(_model, _tokenizer, Classes, Templates);
        Assert.That(one.ClassEmbeddings.allclose(all.ClassEmbeddings, rtol: 1e-5, atol: 1e-6), Is.True);
    }

    [Test]
    public void Build_AveragesTheTemplates()
    {
        using var scope = NewDisposeScope();
        using var first = ZeroShotHead.Build(_model, _tokenizer, Classes, [Templates[0]]);
        using var second = ZeroShotHead.Build(_model, _tokenizer, Classes, [Templates[1]]);
        using var both = ZeroShotHead.Build(_model, _tokenizer, Classes, Templates);

        // Each single-template head holds normalised prompt embeddings; the two-template head their normalised mean.
        var mean = (first.ClassEmbeddings + second.ClassEmbeddings) / 2;
        var expected = mean / mean.norm(1, keepdim: true);
        Assert.That(both.ClassEmbeddings.allclose(expected, rtol: 1e-5, atol: 1e-6), Is.True);
        // And it is really a mixture: unlike either template alone.
        var cosFirst = (both.ClassEmbeddings * first.ClassEmbeddings).sum(dim: 1);
        var cosSecond = (both.ClassEmbeddings * second.ClassEmbeddings).sum(dim: 1);
        Assert.That(cosFirst.max().item<float>(), Is.LessThan(0.999f));
        Assert.That(cosSecond.max().item<float>(), Is.LessThan(0.999f));
        Assert.That(Values(both.ClassEmbeddings.norm(1)), Is.EqualTo(new[] { 1.0, 1, 1 }).Within(1e-6));
    }

    [Test]
    public void Build_WithoutTextTower_Throws()
    {
        using var model = ClipModel.CreateRandom(TinyClipForTestVocabulary(), seed: 1, withText: false);
        var e = Assert.Throws<InvalidOperationException>(() => ZeroShotHead.Build(model, _tokenizer, Classes, Templates));
        Assert.That(e!.Message, Does.Contain("no text tower"));
    }

    [Test]
    public void Build_WithAnotherModelsTokenizer_Throws()
    {
        // TinyClip's own text tower ends texts with id 39; the test tokenizer with 527.
        using var model = ClipModel.CreateRandom(TinyClip.Config(), seed: 1);
        var e = Assert.Throws<ArgumentException>(() => ZeroShotHead.Build(model, _tokenizer, Classes, Templates));
        Assert.That(e!.Message, Does.Contain("end-of-text id 527").And.Contain("39"));

        var config = TinyClipForTestVocabulary();
        using var small = ClipModel.CreateRandom(config with { Text = config.Text! with { VocabularySize = 520 } }, seed: 1);
        e = Assert.Throws<ArgumentException>(() => ZeroShotHead.Build(small, _tokenizer, Classes, Templates));
        Assert.That(e!.Message, Does.Contain("a photo of a cat.").And.Contain("vocabulary of 520"));
    }

    [Test]
    public void Build_ValidatesItsArguments()
    {
        Assert.That(Assert.Throws<ArgumentException>(() => ZeroShotHead.Build(_model, _tokenizer, Classes, ["no placeholder"]))!.Message,
            Does.Contain("no placeholder"));
        Assert.That(Assert.Throws<ArgumentException>(() => ZeroShotHead.Build(_model, _tokenizer, Classes, []))!.Message,
            Does.Contain("template"));
        Assert.That(Assert.Throws<ArgumentException>(() => ZeroShotHead.Build(_model, _tokenizer, ["cat", "cat"], Templates))!.Message,
            Does.Contain("'cat' appears twice"));
        Assert.Throws<ArgumentException>(() => ZeroShotHead.Build(_model, _tokenizer, [], Templates));
        Assert.Throws<ArgumentOutOfRangeException>(() => ZeroShotHead.Build(_model, _tokenizer, Classes, Templates, batchSize: 0));
    }

    [Test]
    public void Build_StopsWhenCancelled()
    {
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.Throws<OperationCanceledException>(() => ZeroShotHead.Build(_model, _tokenizer, Classes, Templates, cancellationToken: cancelled.Token));
    }

    [Test]
    public void Constructor_ValidatesItsArguments()
    {
        using var scope = NewDisposeScope();
        var two = tensor(new float[,] { { 1, 0 }, { 0, 1 } });
        Assert.That(Assert.Throws<ArgumentException>(() => new ZeroShotHead(two, 0, ["only one"]))!.Message, Does.Contain("1 class names were given for 2 classes"));
        Assert.That(Assert.Throws<ArgumentException>(() => new ZeroShotHead(tensor(new float[] { 1, 2 }), 0, ["a", "b"]))!.Message, Does.Contain("[classes, D]"));
        Assert.That(Assert.Throws<ArgumentException>(() => new ZeroShotHead(tensor(new float[,] { { 1, 0 }, { 0, 0 } }), 0, ["a", "b"]))!.Message,
            Does.Contain("Class embedding 1 is zero"));
        Assert.That(Assert.Throws<ArgumentException>(() => new ZeroShotHead(tensor(new float[,] { { 1, float.NaN } }), 0, ["a"]))!.Message,
            Does.Contain("NaN"));
        Assert.Throws<ArgumentException>(() => new ZeroShotHead(two, double.PositiveInfinity, ["a", "b"]));
        Assert.Throws<ArgumentException>(() => new ZeroShotHead(two, 1000, ["a", "b"]), "exp(1000) overflows");
    }

    [Test]
    public void Head_OutlivesTheDisposeScopeItWasBuiltIn()
    {
        ZeroShotHead head;
        using (var scope = NewDisposeScope())
            head = ZeroShotHead.Build(_model, _tokenizer, Classes, Templates);
        using (head)
        using (var scope = NewDisposeScope())
            Assert.That(head.Logits(ones(2, 12)).shape, Is.EqualTo(new long[] { 2, 3 }));
        Assert.Throws<ObjectDisposedException>(() => head.Logits(ones(2, 12)));
    }

    /// <summary>
    /// Each prompt on its own, unpadded (the causal mask makes padding after the end token irrelevant), normalised by
    /// hand, averaged, normalised.
    /// </summary>
    private Tensor ReferenceClassEmbeddings(IReadOnlyList<string> classes, IReadOnlyList<string> templates)
    {
        var rows = new List<Tensor>();
        using (no_grad())
        {
            foreach (var c in classes)
            {
                var sum = zeros(12);
                foreach (var t in templates)
                {
                    var ids = _tokenizer.Encode(t.Replace("{0}", c)).Select(i => (long)i).ToArray();
                    var embed = _model.EncodeText(tensor(ids).unsqueeze(0))[0];
                    sum = sum + embed / embed.square().sum().sqrt();
                }
                var mean = sum / templates.Count;
                rows.Add(mean / mean.square().sum().sqrt());
            }
        }
        return stack(rows);
    }
}
