using System.Text.Json.Nodes;
using Microsoft.ML.TaskVectors.Trainers.Composition;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Trainers.Composition;

public class CompositionStateTests
{
    [Test]
    public void RoundTripsAndDetectsChangedReferences()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("base.safetensors"), "base");
        File.WriteAllText(dir.File("t0.safetensors"), "tau0");
        File.WriteAllText(dir.File("t1.safetensors"), "tau1");
        File.WriteAllText(dir.File("h1.safetensors"), "head1");
        var z = randn(2, 5, generator: new Generator(1));
        using (var state = new CompositionState("atlas", new JsonObject { ["epochs"] = 3 }, ["a", "b"], FileReference.Of(dir.File("base.safetensors")),
                   [FileReference.Of(dir.File("t0.safetensors")), FileReference.Of(dir.File("t1.safetensors"))], [null, FileReference.Of(dir.File("h1.safetensors"))],
                   new Dictionary<string, Tensor> { ["coefficients"] = z }))
            state.Save(dir.File("state"));

        using var loaded = CompositionState.Load(dir.File("state"));
        Assert.That(loaded.Method, Is.EqualTo("atlas"));
        Assert.That(loaded.Options["epochs"]!.GetValue<int>(), Is.EqualTo(3));
        Assert.That(loaded.TaskNames, Is.EqualTo(new[] { "a", "b" }));
        Assert.That(loaded.Heads[0], Is.Null);
        Assert.That(loaded.Tensors["coefficients"].eq(z).all().item<bool>(), Is.True);
        Assert.DoesNotThrow(loaded.VerifyReferences);
        // SHA-256("tau1"), worked out independently of the library.
        Assert.That(loaded.TaskVectors[1].Sha256, Is.EqualTo(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData("tau1"u8))));

        File.WriteAllText(dir.File("t1.safetensors"), "tau1, retrained");
        var e = Assert.Throws<InvalidDataException>(loaded.VerifyReferences)!;
        Assert.That(e.Message, Does.Contain("t1.safetensors").And.Contain("changed"));
    }

    [Test]
    public void MalformedManifestsNameTheFileAndKey()
    {
        using var dir = new TempDirectory();
        Assert.Throws<FileNotFoundException>(() => CompositionState.Load(dir.Path));
        File.WriteAllText(dir.File(CompositionState.ManifestFile), "{\"version\": 1, \"tasks\": []}");
        var e = Assert.Throws<InvalidDataException>(() => CompositionState.Load(dir.Path))!;
        Assert.That(e.Message, Does.Contain(CompositionState.ManifestFile));
        File.WriteAllText(dir.File(CompositionState.ManifestFile), "{\"version\": 99}");
        Assert.That(Assert.Throws<InvalidDataException>(() => CompositionState.Load(dir.Path))!.Message, Does.Contain("version 99"));
    }

    [TestCase("atlas")]
    [TestCase("prob-task")]
    [TestCase("atlas-gated")]
    [TestCase("spike-slab")]
    [TestCase("vtvc")]
    public void ATrainedCompositionScoresTheSameAfterSavingAndLoading(string method)
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDirectory();
        using var suite = new TeacherSuite();
        File.WriteAllText(dir.File("ref"), "x");
        using var trained = CompositionTrainers.Train(method, suite.Engine, suite.Tasks, seed: 2, epochs: 1, batchSize: 16);
        var reference = FileReference.Of(dir.File("ref"));
        using (var state = new CompositionState(trained.Method, trained.Options, ["task0", "task1"], reference, [reference, reference], [null, null], trained.StateTensors()))
            state.Save(dir.File("state"));
        using var loadedState = CompositionState.Load(dir.File("state"));
        using var loaded = TrainedComposition.FromState(loadedState, suite.Engine);
        var pixels = randn(5, 3, 16, 16, generator: new Generator(4));
        var (z, gates) = trained.For(suite.Engine, pixels);
        var (z2, gates2) = loaded.For(suite.Engine, pixels);
        Assert.That(z2.eq(z).all().item<bool>(), Is.True);
        Assert.That(gates2 is null, Is.EqualTo(gates is null));
        if (gates is not null) Assert.That(gates2!.eq(gates).all().item<bool>(), Is.True);
        Assert.That(loaded.IsSampleSpecific, Is.EqualTo(CompositionTrainers.SampleSpecific.ContainsKey(method)));
    }
}
