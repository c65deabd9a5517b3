using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Heads;
using Microsoft.ML.TaskVectors.Images;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Runtime;
using Microsoft.ML.TaskVectors.TaskVectors;
using Microsoft.ML.TaskVectors.Text;
using Microsoft.ML.TaskVectors.Trainers.FineTuning;
using Microsoft.ML.TaskVectors.Trainers.Tasks;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Trainers.FineTuning;

public class FineTunerTests
{
    private static readonly string[] Classes = FineTuningTestData.Colours.Select(c => c.Name).ToArray();

    private TempDirectory _dir = null!;
    private string _model = null!;
    private TaskData _task = null!;

    [OneTimeSetUp]
    public void SetUp()
    {
        _dir = new TempDirectory();
        _model = FineTuningTestData.WriteModel(_dir);
        _task = TaskSource.Parse($"colours=imagefolder:{FineTuningTestData.WriteColourTask(_dir.File("colours"))}").Open();
    }

    [OneTimeTearDown]
    public void TearDown() => _dir.Dispose();

    /// <summary>24 training images in batches of 6: 4 steps an epoch.</summary>
    private static FineTuningOptions Quick => new()
    {
        LearningRate = 3e-3,
        WarmupSteps = 2,
        BatchSize = 6,
        Epochs = 3,
        Device = "cpu",
        LinearProbe = new LinearProbeOptions { MaxIterations = 50 },
    };

    /// <summary>A fixed random linear head: the pre-trained features mean nothing to it, so only fine-tuning can fit it.</summary>
    private static LinearHead RandomHead(int classes = 3, int width = 12) =>
        new(randn(classes, width, generator: new Generator(3)), null, Classes.Take(classes).ToArray());

    [Test]
    public void Train_ThroughAFrozenLinearHead_LowersTheLossAndBeatsThePretrainedModel()
    {
        using var model = ClipModel.Load(_model);
        using var head = RandomHead();
        using var headBefore = head.Weight.clone();
        var textBefore = model.Text!.named_parameters().ToDictionary(p => p.name, p => p.parameter.clone());
        using var scaleBefore = model.LogitScale.clone();
        var visionBefore = model.Vision.named_parameters().ToDictionary(p => p.name, p => p.parameter.clone());
        var reports = new List<FineTuningProgress>();
        long liveBefore = DisposeScopeManager.Statistics.ThreadTotalLiveCount;

        var result = new FineTuner(Quick).Train(model, _task, head, new SynchronousProgress<FineTuningProgress>(reports.Add));

        Assert.That(DisposeScopeManager.Statistics.ThreadTotalLiveCount, Is.EqualTo(liveBefore), "training leaked tensors");
        // Chance level before (the head is random), every image right after.
        Assert.That(result.PretrainedValidationAccuracy, Is.EqualTo(1.0 / 3).Within(1e-12));
        Assert.That(result.PretrainedTestAccuracy, Is.LessThan(0.5));
        Assert.That(result.ValidationAccuracy, Is.EqualTo(1.0));
        Assert.That(result.TestAccuracy, Is.EqualTo(1.0));
        Assert.That(result.Steps, Is.EqualTo(12));
        Assert.That(result.StepLosses, Has.Count.EqualTo(12));
        Assert.That(result.Epochs.Select(e => e.Epoch), Is.EqualTo(new[] { 1, 2, 3 }));
        Assert.That(result.Epochs.Select(e => e.Steps), Is.EqualTo(new[] { 4, 4, 4 }));
        Assert.That(result.Epochs[2].TrainLoss, Is.LessThan(result.Epochs[0].TrainLoss / 10));
        Assert.That(result.StepLosses.TakeLast(4).Average(), Is.LessThan(result.StepLosses.Take(4).Average() / 10));
        Assert.That(result.Epochs[0].TrainAccuracy, Is.LessThan(result.Epochs[2].TrainAccuracy));
        // An epoch's loss is the mean over its images: with equal batches, the mean of its steps' losses.
        Assert.That(result.Epochs[1].TrainLoss, Is.EqualTo(result.StepLosses.Skip(4).Take(4).Average()).Within(1e-12));
        Assert.That(result.Epochs[2].LearningRate, Is.EqualTo(new WarmupCosineSchedule(3e-3, 2, 12).LearningRate(11)));
        Assert.That(result.Device, Is.EqualTo("cpu"));

        // Only the vision tower moved; the head, the text tower and the logit scale are as they were.
        Assert.That(Same(head.Weight, headBefore), Is.True);
        Assert.That(model.Text!.named_parameters().All(p => Same(p.parameter, textBefore[p.name])), Is.True);
        Assert.That(Same(model.LogitScale, scaleBefore), Is.True);
        Assert.That(model.Vision.named_parameters().Count(p => !Same(p.parameter, visionBefore[p.name])), Is.EqualTo(visionBefore.Count));
        // requires_grad is restored and no gradient is kept.
        Assert.That(model.Tensors().Values.All(t => t.requires_grad), Is.True);
        Assert.That(model.Vision.parameters().All(p => p.grad is null), Is.True);

        // Progress: pre-trained evaluation, then steps 1…12 with evaluations between epochs, then the test evaluation.
        Assert.That(reports[0].Phase, Is.EqualTo(FineTuningPhase.PretrainedEvaluation));
        var steps = reports.Where(r => r.Phase == FineTuningPhase.Training).ToList();
        Assert.That(steps.Select(r => r.Step), Is.EqualTo(Enumerable.Range(1, 12)));
        Assert.That(steps.Select(r => r.Loss!.Value), Is.EqualTo(result.StepLosses));
        Assert.That(steps.Select(r => r.Epoch), Is.EqualTo(Enumerable.Range(0, 12).Select(s => s / 4 + 1)));
        Assert.That(steps[^1].Fraction, Is.EqualTo(1.0));
        Assert.That(reports.Count(r => r.Phase == FineTuningPhase.Evaluation && r.Accuracy is not null), Is.EqualTo(4));
        Assert.That(reports[^1], Is.EqualTo(new FineTuningProgress(FineTuningPhase.Evaluation, 1, 3, 3, 12, 12, null, 1.0)));

        foreach (var t in textBefore.Values.Concat(visionBefore.Values)) t.Dispose();
    }

    [Test]
    public void Train_WithAStepBudget_StopsPartWayThroughAnEpochAndEvaluatesAsAsked()
    {
        using var model = ClipModel.Load(_model, loadText: false);
        using var head = RandomHead();
        var options = Quick with { Steps = 5, Epochs = 50, EvaluatePretrained = false, EvaluateEveryEpoch = false, LearningRate = 1e-4 };

        var result = new FineTuner(options).Train(model, _task, head);

        Assert.That(result.Steps, Is.EqualTo(5));
        Assert.That(result.Epochs.Select(e => e.Steps), Is.EqualTo(new[] { 4, 1 }));
        Assert.That(result.Epochs.Select(e => e.ValidationAccuracy is null), Is.EqualTo(new[] { true, false }));
        Assert.That((result.PretrainedValidationAccuracy, result.PretrainedTestAccuracy), Is.EqualTo(((double?)null, (double?)null)));
        Assert.That(result.ValidationAccuracy, Is.EqualTo(result.Epochs[1].ValidationAccuracy));
        Assert.That(result.StepLosses, Has.Count.EqualTo(5));
    }

    [Test]
    public void FineTune_SameSeedGivesTheSameTaskVectorBitForBit_AnotherSeedDoesNot()
    {
        var options = Quick with { Steps = 4, Head = FineTuningHeadKind.Linear, EvaluatePretrained = false };
        var paths = new[] { ("a", 1), ("b", 1), ("c", 2) }.Select(run =>
        {
            var path = _dir.File($"seed-{run.Item1}.safetensors");
            new FineTuner(options with { Seed = run.Item2 }).FineTune(_model, _task, path);
            return path;
        }).ToArray();

        using var a = SafetensorsReader.Open(paths[0]);
        using var b = SafetensorsReader.Open(paths[1]);
        using var c = SafetensorsReader.Open(paths[2]);
        Assert.That(b.Tensors.Select(t => t.Name), Is.EqualTo(a.Tensors.Select(t => t.Name)));
        int differing = 0;
        foreach (var info in a.Tensors)
        {
            using var scope = NewDisposeScope();
            Assert.That(Same(a.Read(info.Name), b.Read(info.Name)), Is.True, info.Name);
            if (!Same(a.Read(info.Name), c.Read(info.Name))) differing++;
        }
        Assert.That(differing, Is.GreaterThan(a.Tensors.Count / 2), "another seed (order and crops) should give another task vector");
    }

    [Test]
    public void FineTune_WritesTheVisionTaskVectorEqualToFineTunedMinusPretrained_TheHeadAndTheCheckpoint()
    {
        using var scope = NewDisposeScope();
        var tau = _dir.File("out/colours.safetensors");
        var options = Quick with { Steps = 3, SaveCheckpoint = true, EvaluatePretrained = false };

        var result = new FineTuner(options).FineTune(_model, _task, tau);

        Assert.That((result.TaskVectorPath, result.HeadPath, result.CheckpointPath),
            Is.EqualTo((tau, _dir.File("out/colours.head.safetensors"), (string?)_dir.File("out/colours.model"))));
        using var pretrained = Checkpoint.Open(_model);
        using var finetuned = Checkpoint.Open(result.CheckpointPath!);
        using var tauFile = SafetensorsReader.Open(tau);

        // Exactly the vision tower's tensors, each θ_ft − θ0 (float32 subtraction, bit for bit), and not all zero.
        var visionNames = pretrained.Tensors.Where(TensorFilter.ClipVisionTower.Matches).Select(t => t.Name).ToArray();
        Assert.That(tauFile.Tensors.Select(t => t.Name), Is.EqualTo(visionNames));
        Assert.That(tauFile.Tensors.All(t => t.DType == TensorDType.F32), Is.True);
        int changed = 0;
        foreach (var name in visionNames)
        {
            var expected = finetuned.ReadFloat32(name) - pretrained.ReadFloat32(name);
            var stored = tauFile.Read(name);
            Assert.That(Same(stored, expected), Is.True, name);
            if (stored.abs().max().item<float>() > 0) changed++;
        }
        Assert.That(changed, Is.EqualTo(visionNames.Length));
        Assert.That(tauFile.Metadata["format"], Is.EqualTo(FineTuner.TaskVectorFormat));
        Assert.That(tauFile.Metadata["task"], Is.EqualTo("colours"));
        Assert.That(tauFile.Metadata["head"], Is.EqualTo("colours.head.safetensors"));

        // The library's own task vector of the two checkpoints agrees, and the τ file loads as a task vector.
        using var fromCheckpoints = TaskVector.FromCheckpoints(pretrained, finetuned, TensorFilter.ClipVisionTower);
        using var loaded = TaskVector.Load(tau);
        Assert.That(loaded.Tensors.Select(t => t.Name), Is.EqualTo(fromCheckpoints.Tensors.Select(t => t.Name)));
        foreach (var name in visionNames) Assert.That(Same(loaded.Read(name), fromCheckpoints.Read(name)), Is.True, name);

        // The checkpoint: every other tensor (text tower, logit scale) is the pre-trained one; it loads as a model.
        Assert.That(finetuned.Tensors.Select(t => t.Name), Is.EqualTo(pretrained.Tensors.Select(t => t.Name)));
        foreach (var info in pretrained.Tensors.Where(t => !visionNames.Contains(t.Name)))
            Assert.That(Same(finetuned.Read(info.Name), pretrained.Read(info.Name)), Is.True, info.Name);
        using var reloaded = ClipModel.Load(result.CheckpointPath!);
        Assert.That(reloaded.Text, Is.Not.Null);
        Assert.That(File.Exists(Path.Combine(result.CheckpointPath!, ClipTokenizer.VocabFileName)), Is.True);

        // The head file round-trips: the zero-shot head of the pre-trained model with the default templates ("colours" has no set).
        using var model = ClipModel.Load(_model);
        using var expectedHead = ZeroShotHead.Build(model, ClipTokenizer.FromFolder(_model), Classes, PromptTemplates.Default);
        using var head = ZeroShotHead.Load(result.HeadPath!);
        Assert.That(head.ClassNames, Is.EqualTo(Classes));
        Assert.That(head.Templates, Is.EqualTo(PromptTemplates.Default));
        Assert.That(Same(head.ClassEmbeddings, expectedHead.ClassEmbeddings), Is.True);
        Assert.That(head.LogitScale, Is.EqualTo(expectedHead.LogitScale));
    }

    [Test]
    public void FineTune_OnAnOpenClipFolder_WritesHuggingFaceNames()
    {
        var folder = FineTuningTestData.WriteModel(_dir, "openclip", naming: ClipNaming.OpenClip);
        var tau = _dir.File("openclip.safetensors");
        new FineTuner(Quick with { Steps = 1, Head = FineTuningHeadKind.Linear, EvaluatePretrained = false }).FineTune(folder, _task, tau);

        using var view = ClipCheckpoint.Open(folder);
        using var tauFile = SafetensorsReader.Open(tau);
        Assert.That(view.Naming, Is.EqualTo(ClipNaming.OpenClip));
        Assert.That(tauFile.Tensors.Select(t => t.Name), Is.EqualTo(view.Tensors.Where(TensorFilter.ClipVisionTower.Matches).Select(t => t.Name)));
        Assert.That(tauFile.Tensors.Select(t => t.Name), Has.Some.EqualTo("vision_model.encoder.layers.0.self_attn.q_proj.weight"));
        Assert.That(LinearHead.Load(FineTuner.HeadPathFor(tau)).ClassNames, Is.EqualTo(Classes));
    }

    [Test]
    public void BuildHead_Linear_IsTheProbeOnIndependentlyComputedPretrainedFeatures()
    {
        using var scope = NewDisposeScope();
        using var model = ClipModel.Load(_model, loadText: false);
        var images = Enumerable.Range(0, _task.Train.Count).Select(_task.Train.LoadImage).ToArray();
        var features = model.EncodeImage(ClipImagePreprocessor.For(model.Config.Vision).ToTensor(images));
        var labels = _task.Train.GetLabels().Select(l => (long)l).ToArray();

        // Batches of 5 do not divide 24 images.
        var embedded = TaskEvaluation.Embed(model, _task.Train, batchSize: 5);
        Assert.That(embedded.allclose(features, rtol: 1e-5, atol: 1e-6), Is.True);

        var tuner = new FineTuner(Quick with { Head = FineTuningHeadKind.Linear, EvaluationBatchSize = 5 });
        using var head = (LinearHead)tuner.BuildHead(model, _task, tokenizer: null);
        using var expected = LinearHead.Fit(features, labels, Classes, new LinearProbeOptions { MaxIterations = 50 });
        Assert.That(head.ClassNames, Is.EqualTo(Classes));
        Assert.That(head.Weight.allclose(expected.Weight, rtol: 1e-3, atol: 1e-4), Is.True);
        Assert.That(head.Bias!.allclose(expected.Bias!, rtol: 1e-3, atol: 1e-4), Is.True);

        // Accuracy agrees with a count over the same features.
        var testImages = Enumerable.Range(0, _task.Test!.Count).Select(_task.Test.LoadImage).ToArray();
        var testPredictions = head.Predict(model.EncodeImage(ClipImagePreprocessor.For(model.Config.Vision).ToTensor(testImages))).data<long>().ToArray();
        double expectedAccuracy = testPredictions.Where((p, i) => p == _task.Test.GetLabel(i)).Count() / (double)testImages.Length;
        Assert.That(TaskEvaluation.Accuracy(model, head, _task.Test, batchSize: 4), Is.EqualTo(expectedAccuracy));
    }

    [Test]
    public void BuildHead_ZeroShot_UsesTheTemplatesOfAKnownTaskName()
    {
        using var scope = NewDisposeScope();
        using var model = ClipModel.Load(_model);
        var tokenizer = ClipTokenizer.FromFolder(_model);
        var eurosat = _task with { Name = "EuroSAT" };
        using var head = (ZeroShotHead)new FineTuner(Quick).BuildHead(model, eurosat, tokenizer);
        using var expected = ZeroShotHead.Build(model, tokenizer, Classes, PromptTemplates.For("EuroSAT"));
        Assert.That(head.Templates, Is.EqualTo(PromptTemplates.For("EuroSAT")));
        Assert.That(Same(head.ClassEmbeddings, expected.ClassEmbeddings), Is.True);

        var e = Assert.Throws<ArgumentException>(() => new FineTuner(Quick).BuildHead(model, eurosat, tokenizer: null))!;
        Assert.That(e.Message, Does.Contain("tokenizer"));
    }

    [Test]
    public void Train_StopsWhenTheLossIsNoLongerFinite_NamingTheStepAndTheTerm()
    {
        using var model = ClipModel.Load(_model, loadText: false);
        using var head = RandomHead();
        var options = Quick with { LearningRate = 1e30, WarmupSteps = 0, GradientClipNorm = null, EvaluatePretrained = false };

        var e = Assert.Throws<NotFiniteNumberException>(() => new FineTuner(options).Train(model, _task, head))!;

        Assert.That(e.Message, Does.Match(@"^Fine-tuning stopped at step \d+ of 12 \(epoch \d\): the (cross-entropy loss|gradient norm of the cross-entropy loss) is (NaN|-?Infinity)"));
        Assert.That(double.IsFinite(e.OffendingNumber), Is.False);
        Assert.That(model.Vision.parameters().All(p => p.grad is null && p.requires_grad), Is.True);
    }

    [Test]
    public void FineTune_Cancelled_WritesNothing()
    {
        var tau = _dir.File("cancelled/colours.safetensors");
        using var cts = new CancellationTokenSource();
        var progress = new SynchronousProgress<FineTuningProgress>(p =>
        {
            if (p.Phase == FineTuningPhase.Training && p.Step == 2) cts.Cancel();
        });
        Assert.Throws<OperationCanceledException>(() =>
            new FineTuner(Quick with { Head = FineTuningHeadKind.Linear }).FineTune(_model, _task, tau, progress: progress, cancellationToken: cts.Token));
        Assert.That(Directory.Exists(_dir.File("cancelled")) && Directory.EnumerateFileSystemEntries(_dir.File("cancelled")).Any(), Is.False);
    }

    [Test]
    public void AHeadThatDoesNotFitIsRefused()
    {
        using var model = ClipModel.Load(_model, loadText: false);
        using var twoClasses = RandomHead(classes: 2);
        var e = Assert.Throws<ArgumentException>(() => new FineTuner(Quick).Train(model, _task, twoClasses))!;
        Assert.That(e.Message, Does.Contain("The head has 2 classes but task 'colours' has 3"));
        using var narrow = new LinearHead(randn(3, 5), null, Classes);
        e = Assert.Throws<ArgumentException>(() => new FineTuner(Quick).FineTune(_model, _task, _dir.File("narrow.safetensors"), narrow))!;
        Assert.That(e.Message, Does.Contain("The head reads 5-wide embeddings but the model's are 12 wide"));
    }

    [Test]
    public void AZeroShotHeadNeedsATextTower()
    {
        using var dir = new TempDirectory();
        using (var visionOnly = ClipModel.CreateRandom(Heads.ClassificationHeadTests.TinyClipForTestVocabulary(), 4, withText: false))
            visionOnly.Save(dir.File("vision-only"));
        var e = Assert.Throws<InvalidOperationException>(() => new FineTuner(Quick).FineTune(dir.File("vision-only"), _task, dir.File("t.safetensors")))!;
        Assert.That(e.Message, Does.Contain("no text tower").And.Contain("--head linear"));
    }

    [Test]
    public void ARefusedDeviceIsAnError()
    {
        Assume.That(ComputeDevice.IsCudaAvailable(), Is.False);
        var e = Assert.Throws<InvalidOperationException>(() =>
            new FineTuner(Quick with { Device = "cuda", RequireDevice = true }).FineTune(_model, _task, _dir.File("cuda.safetensors")))!;
        Assert.That(e.Message, Does.Contain("'cuda' cannot be used"));
    }

    private static IEnumerable<TestCaseData> BadOptions()
    {
        var o = new FineTuningOptions();
        yield return new TestCaseData(o with { LearningRate = 0 }, "LearningRate").SetArgDisplayNames("LearningRate");
        yield return new TestCaseData(o with { LearningRate = double.NaN }, "LearningRate").SetArgDisplayNames("LearningRate");
        yield return new TestCaseData(o with { WeightDecay = -0.1 }, "WeightDecay").SetArgDisplayNames("WeightDecay");
        yield return new TestCaseData(o with { Beta1 = 1 }, "Beta1").SetArgDisplayNames("Beta1");
        yield return new TestCaseData(o with { Beta2 = -0.5 }, "Beta2").SetArgDisplayNames("Beta2");
        yield return new TestCaseData(o with { Epsilon = 0 }, "Epsilon").SetArgDisplayNames("Epsilon");
        yield return new TestCaseData(o with { WarmupSteps = -1 }, "WarmupSteps").SetArgDisplayNames("WarmupSteps");
        yield return new TestCaseData(o with { GradientClipNorm = 0 }, "GradientClipNorm").SetArgDisplayNames("GradientClipNorm");
        yield return new TestCaseData(o with { BatchSize = 0 }, "BatchSize").SetArgDisplayNames("BatchSize");
        yield return new TestCaseData(o with { Epochs = 0 }, "Epochs").SetArgDisplayNames("Epochs");
        yield return new TestCaseData(o with { Steps = 0 }, "Steps").SetArgDisplayNames("Steps");
        yield return new TestCaseData(o with { EvaluationBatchSize = 0 }, "EvaluationBatchSize").SetArgDisplayNames("EvaluationBatchSize");
        yield return new TestCaseData(o with { Head = (FineTuningHeadKind)7 }, "Head").SetArgDisplayNames("Head");
        yield return new TestCaseData(o with { Templates = ["no placeholder"] }, "Templates").SetArgDisplayNames("Templates");
        yield return new TestCaseData(o with { Templates = [] }, "Templates").SetArgDisplayNames("Templates");
        yield return new TestCaseData(o with { Augmentation = new ImageAugmentationOptions { MinScale = 2 } }, "Augmentation").SetArgDisplayNames("Augmentation");
    }

    [TestCaseSource(nameof(BadOptions))]
    public void BadOptionsAreNamed(FineTuningOptions options, string option)
    {
        var e = Assert.Throws<ArgumentException>(() => new FineTuner(options))!;
        Assert.That(e.ParamName, Is.EqualTo(option));
        Assert.That(e.Message, Does.StartWith($"FineTuningOptions.{option}"));
    }

    /// <summary>Same shape and every element equal, bit for bit.</summary>
    private static bool Same(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        return a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();
    }

    [Test]
    public void PathsTemplatesAndRecipeEpochsFollowTheTaskName()
    {
        Assert.That(FineTuner.HeadPathFor("out/cars.safetensors"), Is.EqualTo("out/cars.head.safetensors"));
        Assert.That(FineTuner.HeadPathFor("out/cars.SAFETENSORS"), Is.EqualTo("out/cars.head.safetensors"));
        Assert.That(FineTuner.HeadPathFor("out/cars"), Is.EqualTo("out/cars.head.safetensors"));
        Assert.That(FineTuner.CheckpointFolderFor("out/cars.safetensors"), Is.EqualTo("out/cars.model"));
        Assert.That(FineTuner.TemplatesFor("GTSRB"), Is.EqualTo(PromptTemplates.For("GTSRB")));
        Assert.That(FineTuner.TemplatesFor("eurosatval"), Is.EqualTo(PromptTemplates.For("EuroSAT")));
        Assert.That(FineTuner.TemplatesFor("colours"), Is.EqualTo(PromptTemplates.Default));
        Assert.That(FineTuningOptions.RecipeEpochsFor("DTD"), Is.EqualTo(76));
        Assert.That(FineTuningOptions.RecipeEpochsFor("mnistVal"), Is.EqualTo(5));
        Assert.That(FineTuningOptions.RecipeEpochsFor("colours"), Is.Null);
    }
}
