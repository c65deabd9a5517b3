using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Data;
using Microsoft.ML.TaskVectors.Heads;
using Microsoft.ML.TaskVectors.Images;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Runtime;
using Microsoft.ML.TaskVectors.TaskVectors;
using Microsoft.ML.TaskVectors.Text;
using Microsoft.ML.TaskVectors.Trainers.Tasks;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Microsoft.ML.TaskVectors.Trainers.FineTuning;

/// <summary>
/// Fine-tunes the CLIP vision tower on one task with the task's head frozen (the task_vectors recipe, see
/// <see cref="FineTuningOptions"/>) and writes the task vector τ = θ_ft − θ0 of the vision tower, in Hugging Face
/// names, as safetensors; the head goes next to it (<c>TAU.head.safetensors</c>) so later commands can reuse it.
/// </summary>
/// <remarks>
/// Only the vision tower's parameters are trained; the text tower, the logit scale and the head stay frozen. All
/// randomness (the order of the training images each epoch, the augmentation) comes from <see cref="Random"/>
/// seeded with <see cref="FineTuningOptions.Seed"/>, and nothing in the forward pass is random, so the same seed,
/// data and options give the same task vector bit for bit on the CPU.
/// </remarks>
public sealed class FineTuner
{
    /// <summary>The <c>format</c> metadata of a task vector file (as <see cref="TaskVector.Save"/> writes).</summary>
    public const string TaskVectorFormat = "taskvectors/task-vector";

    private const string SafetensorsExtension = ".safetensors";

    /// <summary>Creates a fine-tuner; <paramref name="options"/> defaults to the task_vectors recipe.</summary>
    /// <exception cref="ArgumentException">An option is out of range; the message names it.</exception>
    public FineTuner(FineTuningOptions? options = null)
    {
        Options = options ?? new FineTuningOptions();
        Options.Validate();
    }

    /// <summary>The options in use.</summary>
    public FineTuningOptions Options { get; }

    /// <summary>The built-in prompt templates of a task name (see <see cref="PromptTemplates.For"/>), or CLIP's default for other names.</summary>
    public static IReadOnlyList<string> TemplatesFor(string taskName)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(taskName);
        try
        {
            return PromptTemplates.For(taskName);
        }
        catch (KeyNotFoundException)
        {
            return PromptTemplates.Default;
        }
    }

    /// <summary>Where the head of a task vector file goes: <c>X.safetensors</c> → <c>X.head.safetensors</c>.</summary>
    public static string HeadPathFor(string taskVectorPath) => Stem(taskVectorPath) + ".head" + SafetensorsExtension;

    /// <summary>Where the fine-tuned model folder of a task vector file goes: <c>X.safetensors</c> → <c>X.model/</c>.</summary>
    public static string CheckpointFolderFor(string taskVectorPath) => Stem(taskVectorPath) + ".model";

    /// <summary>
    /// The whole job: loads the model folder, builds the head unless given, fine-tunes, then writes the task vector to
    /// <paramref name="taskVectorPath"/>, the head to <see cref="HeadPathFor"/> and, with
    /// <see cref="FineTuningOptions.SaveCheckpoint"/>, the fine-tuned model to <see cref="CheckpointFolderFor"/>. Every
    /// file is written atomically, so a failed or cancelled run leaves none half-written.
    /// </summary>
    /// <param name="modelFolder">The pre-trained CLIP model folder (Hugging Face or open_clip).</param>
    /// <param name="task">The task's data.</param>
    /// <param name="taskVectorPath">The task vector file to write (<c>.safetensors</c>).</param>
    /// <param name="head">A head for the task's classes, or null to build one (<see cref="FineTuningOptions.Head"/>). It is moved to the training device.</param>
    /// <param name="progress">Receives progress reports.</param>
    /// <param name="cancellationToken">Stops between steps and batches.</param>
    /// <exception cref="ArgumentException">The head does not fit the task or the model.</exception>
    /// <exception cref="InvalidOperationException">A zero-shot head is asked for but the model has no text tower, or the requested device is refused.</exception>
    /// <exception cref="NotFiniteNumberException">Training diverged; the message names the step and the term.</exception>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public FineTuningResult FineTune(string modelFolder, TaskData task, string taskVectorPath, ClassificationHead? head = null,
        IProgress<FineTuningProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelFolder);
        ArgumentNullException.ThrowIfNull(task);
        ArgumentException.ThrowIfNullOrEmpty(taskVectorPath);
        var headPath = HeadPathFor(taskVectorPath);
        var device = ComputeDevice.Resolve(Options.Device, Options.RequireDevice);
        var buildZeroShot = head is null && Options.Head == FineTuningHeadKind.ZeroShot;

        using var model = ClipModel.Load(modelFolder, loadText: buildZeroShot);
        if (buildZeroShot && model.Text is null)
            throw new InvalidOperationException(
                $"{modelFolder}: the model has no text tower, which a zero-shot head needs; fine-tune with a linear-probe head (Head = Linear, --head linear) or give a head.");
        model.To(device);
        var ownedHead = head is null ? BuildHead(model, task, buildZeroShot ? ClipTokenizer.FromFolder(modelFolder) : null, progress, cancellationToken) : null;
        try
        {
            var used = head ?? ownedHead!;
            var result = Train(model, task, used, progress, cancellationToken);

            progress?.Report(new FineTuningProgress(FineTuningPhase.Saving, 0, result.Epochs.Count, result.Epochs.Count, result.Steps, result.Steps, null, null));
            using var pretrained = ClipCheckpoint.Open(modelFolder);
            WriteTaskVector(model, pretrained, taskVectorPath, Metadata(task, modelFolder, headPath, result), cancellationToken);
            used.Save(headPath);
            string? checkpointFolder = null;
            if (Options.SaveCheckpoint)
            {
                checkpointFolder = CheckpointFolderFor(taskVectorPath);
                SaveCheckpoint(model, pretrained, modelFolder, checkpointFolder, cancellationToken);
            }
            progress?.Report(new FineTuningProgress(FineTuningPhase.Saving, 1, result.Epochs.Count, result.Epochs.Count, result.Steps, result.Steps, null, null));
            return result with { TaskVectorPath = taskVectorPath, HeadPath = headPath, CheckpointPath = checkpointFolder };
        }
        finally
        {
            ownedHead?.Dispose();
        }
    }

    /// <summary>
    /// Builds the frozen head of <see cref="FineTuningOptions.Head"/> on the model's device: a zero-shot head from the
    /// text tower with <see cref="FineTuningOptions.Templates"/> (by default <see cref="TemplatesFor"/> the task's
    /// name), or a linear probe fitted on the pre-trained features of the train split (evaluation preprocessing).
    /// </summary>
    /// <param name="model">The pre-trained model (with its text tower for a zero-shot head).</param>
    /// <param name="task">The task.</param>
    /// <param name="tokenizer">The model's tokenizer; needed for a zero-shot head only.</param>
    /// <param name="progress">Receives <see cref="FineTuningPhase.Head"/> reports.</param>
    /// <param name="cancellationToken">Stops between batches.</param>
    /// <exception cref="ArgumentException">A zero-shot head is asked for without a tokenizer.</exception>
    /// <exception cref="InvalidOperationException">A zero-shot head is asked for but the model has no text tower.</exception>
    public ClassificationHead BuildHead(ClipModel model, TaskData task, ClipTokenizer? tokenizer,
        IProgress<FineTuningProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(task);
        IProgress<double> phase = new SynchronousProgress<double>(f =>
            progress?.Report(new FineTuningProgress(FineTuningPhase.Head, Math.Clamp(f, 0, 1), 0, 0, 0, 0, null, null)));
        if (Options.Head == FineTuningHeadKind.ZeroShot)
        {
            if (tokenizer is null)
                throw new ArgumentException("A zero-shot head needs the model's tokenizer (ClipTokenizer.FromFolder of the model folder).", nameof(tokenizer));
            return ZeroShotHead.Build(model, tokenizer, task.ClassNames, Options.Templates ?? TemplatesFor(task.Name),
                progress: phase, cancellationToken: cancellationToken);
        }
        // Features first (most of the work), then the probe.
        using var features = TaskEvaluation.Embed(model, task.Train, Options.EvaluationBatchSize,
            new SynchronousProgress<double>(f => phase.Report(0.9 * f)), cancellationToken);
        var labels = Array.ConvertAll(task.Train.GetLabels(), l => (long)l);
        var head = LinearHead.Fit(features, labels, task.ClassNames, Options.LinearProbe,
            new SynchronousProgress<double>(f => phase.Report(0.9 + 0.1 * f)), cancellationToken);
        return head.To(model.Device);
    }

    /// <summary>
    /// Fine-tunes <paramref name="model"/>'s vision tower in place, on the model's device, through the frozen
    /// <paramref name="head"/> (moved to that device): AdamW over the vision parameters, the warm-up + cosine schedule,
    /// gradient clipping, augmentation, one <c>NewDisposeScope</c> per step. Measures accuracy as the options ask.
    /// </summary>
    /// <param name="model">The model to fine-tune; its text tower and logit scale are left unchanged.</param>
    /// <param name="task">The task's data.</param>
    /// <param name="head">The frozen head: one class per task class, reading the model's projected embeddings.</param>
    /// <param name="progress">Receives progress reports.</param>
    /// <param name="cancellationToken">Stops between steps and batches; the model is then partly trained.</param>
    /// <exception cref="ArgumentException">The head does not fit the task or the model, or the train split is empty.</exception>
    /// <exception cref="NotFiniteNumberException">The loss or the gradient norm became NaN or infinite; the message names the step.</exception>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public FineTuningResult Train(ClipModel model, TaskData task, ClassificationHead head,
        IProgress<FineTuningProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(head);
        CheckHead(model, task, head);
        if (task.Train.Count == 0) throw new ArgumentException($"Task '{task.Name}': the train split has no images.", nameof(task));
        var clock = Stopwatch.StartNew();
        var device = model.Device;
        head.To(device);

        int n = task.Train.Count;
        int batchSize = Options.BatchSize;
        int perEpoch = (n + batchSize - 1) / batchSize;
        int totalSteps = Options.Steps ?? checked(Options.Epochs * perEpoch);
        int epochs = (totalSteps + perEpoch - 1) / perEpoch;
        var schedule = new WarmupCosineSchedule(Options.LearningRate, Options.WarmupSteps, totalSteps);
        var augmentation = Options.Augmentation is { } a
            ? new ImageAugmentation(a with { Preprocessing = a.Preprocessing with { ImageSize = model.Config.Vision.ImageSize } })
            : null;
        var preprocessor = ClipImagePreprocessor.For(model.Config.Vision);

        double? pretrainedVal = null, pretrainedTest = null;
        if (Options.EvaluatePretrained)
        {
            pretrainedVal = Evaluate(model, head, task.Validation, FineTuningPhase.PretrainedEvaluation, 0, epochs, 0, totalSteps, progress, cancellationToken);
            if (task.Test is not null)
                pretrainedTest = Evaluate(model, head, task.Test, FineTuningPhase.PretrainedEvaluation, 0, epochs, 0, totalSteps, progress, cancellationToken);
        }

        // Separate streams, so switching augmentation off does not change the order of the images.
        var orderRandom = new Random(Options.Seed);
        var augmentRandom = new Random(unchecked(Options.Seed * 7919 + 104729));
        var order = Enumerable.Range(0, n).ToArray();
        var history = new List<FineTuningEpoch>(epochs);
        var stepLosses = new List<double>(totalSteps);
        double? validation = null;

        var frozen = Freeze(model);
        var parameters = model.Vision.parameters().ToArray();
        try
        {
            using var optimizer = optim.AdamW(parameters, Options.LearningRate, Options.Beta1, Options.Beta2, Options.Epsilon, Options.WeightDecay);
            int step = 0;
            for (int epoch = 1; epoch <= epochs; epoch++)
            {
                Shuffle(order, orderRandom);
                double lossSum = 0, lr = 0;
                long seen = 0, correct = 0;
                int epochSteps = 0;
                for (int start = 0; start < n && step < totalSteps; start += batchSize, step++, epochSteps++)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var indices = new ArraySegment<int>(order, start, Math.Min(batchSize, n - start));
                    lr = schedule.LearningRate(step);
                    var (loss, right) = Step(model, head, task.Train, indices, optimizer, parameters, lr, augmentation, augmentRandom, preprocessor, step, totalSteps, epoch);
                    stepLosses.Add(loss);
                    lossSum += loss * indices.Count;
                    seen += indices.Count;
                    correct += right;
                    progress?.Report(new FineTuningProgress(FineTuningPhase.Training, (double)(step + 1) / totalSteps, epoch, epochs, step + 1, totalSteps,
                        loss, (double)correct / seen));
                }
                double? epochValidation = null;
                if (Options.EvaluateEveryEpoch || epoch == epochs)
                    validation = epochValidation = Evaluate(model, head, task.Validation, FineTuningPhase.Evaluation, epoch, epochs, step, totalSteps, progress, cancellationToken);
                history.Add(new FineTuningEpoch(epoch, epochSteps, lossSum / seen, (double)correct / seen, epochValidation, lr));
            }
        }
        finally
        {
            Unfreeze(model, frozen, parameters);
        }

        double? test = task.Test is null ? null
            : Evaluate(model, head, task.Test, FineTuningPhase.Evaluation, epochs, epochs, totalSteps, totalSteps, progress, cancellationToken);
        return new FineTuningResult(task.Name, totalSteps, history.AsReadOnly(), stepLosses.AsReadOnly(), pretrainedVal, pretrainedTest,
            validation, test, device.ToString(), clock.Elapsed);
    }

    /// <summary>
    /// Writes τ = θ_ft − θ0 of <paramref name="finetuned"/>'s vision tower (every parameter, Hugging Face names, F32,
    /// computed in float32) as a safetensors file, atomically, with θ0 read tensor by tensor from
    /// <paramref name="pretrained"/>.
    /// </summary>
    /// <param name="finetuned">The fine-tuned model.</param>
    /// <param name="pretrained">The pre-trained checkpoint in Hugging Face names (a <see cref="ClipCheckpoint"/>).</param>
    /// <param name="path">The file to write.</param>
    /// <param name="metadata">Metadata to store (for example <c>format</c> and <c>task</c>).</param>
    /// <param name="cancellationToken">Stops between tensors; nothing is written then.</param>
    /// <exception cref="InvalidDataException">The checkpoint lacks a vision tensor or has it in another shape; every one is listed.</exception>
    public static void WriteTaskVector(ClipModel finetuned, Checkpoint pretrained, string path,
        IReadOnlyDictionary<string, string>? metadata = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(finetuned);
        ArgumentNullException.ThrowIfNull(pretrained);
        ArgumentException.ThrowIfNullOrEmpty(path);
        var parameters = finetuned.Vision.named_parameters()
            .Select(p => (Name: p.name, Tensor: (Tensor)p.parameter))
            .OrderBy(p => p.Name, StringComparer.Ordinal)
            .ToArray();
        var problems = new List<string>();
        foreach (var (name, t) in parameters)
        {
            if (!pretrained.Contains(name)) problems.Add($"'{name}' is missing");
            else if (!pretrained.GetInfo(name).Shape.AsSpan().SequenceEqual(t.shape))
                problems.Add($"'{name}' has shape {pretrained.GetInfo(name).ShapeText}, the model [{string.Join(", ", t.shape)}]");
        }
        if (problems.Count > 0)
            throw new InvalidDataException($"{pretrained.Location} is not the pre-trained checkpoint of this model:\n  " + string.Join("\n  ", problems));

        using var writer = SafetensorsWriter.Create(path, parameters.Select(p => new TensorInfo(p.Name, TensorDType.F32, p.Tensor.shape)), metadata);
        foreach (var (name, t) in parameters)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var theta0 = pretrained.ReadFloat32(name);
            writer.Write(name, t.detach().to(ScalarType.Float32, CPU) - theta0);
        }
        writer.Commit();
    }

    private (double Loss, long Correct) Step(ClipModel model, ClassificationHead head, LabeledImageDataset train, IReadOnlyList<int> indices,
        optim.Optimizer optimizer, IReadOnlyList<TorchSharp.Modules.Parameter> parameters, double lr, ImageAugmentation? augmentation, Random augmentRandom,
        ClipImagePreprocessor preprocessor, int step, int totalSteps, int epoch)
    {
        using var scope = NewDisposeScope();
        foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
        optimizer.zero_grad();
        var device = model.Device;
        var pixels = augmentation is null
            ? new PixelSource(preprocessor).Batch(train, indices, device)
            : PixelSource.Augmented(train, indices, augmentation, augmentRandom, device);
        var labels = PixelSource.Labels(train, indices, device);
        var logits = head.Logits(model.EncodeImage(pixels));
        var loss = F.cross_entropy(logits, labels);
        double value = loss.item<float>();
        if (!double.IsFinite(value)) throw Diverged(step, totalSteps, epoch, "the cross-entropy loss", value);
        loss.backward();
        if (Options.GradientClipNorm is { } clip)
        {
            double norm = nn.utils.clip_grad_norm_(parameters, clip);
            if (!double.IsFinite(norm)) throw Diverged(step, totalSteps, epoch, "the gradient norm of the cross-entropy loss", norm);
        }
        optimizer.step();
        long correct;
        using (no_grad()) correct = logits.argmax(1).eq(labels).sum().item<long>();
        return (value, correct);
    }

    private double Evaluate(ClipModel model, ClassificationHead head, LabeledImageDataset data, FineTuningPhase phase, int epoch, int epochs,
        int step, int totalSteps, IProgress<FineTuningProgress>? progress, CancellationToken cancellationToken)
    {
        var fraction = new SynchronousProgress<double>(f =>
            progress?.Report(new FineTuningProgress(phase, f, epoch, epochs, step, totalSteps, null, null)));
        var accuracy = TaskEvaluation.Accuracy(model, head, data, Options.EvaluationBatchSize, fraction, cancellationToken);
        progress?.Report(new FineTuningProgress(phase, 1, epoch, epochs, step, totalSteps, null, accuracy));
        return accuracy;
    }

    private static NotFiniteNumberException Diverged(int step, int totalSteps, int epoch, string term, double value) =>
        new($"Fine-tuning stopped at step {step + 1} of {totalSteps} (epoch {epoch}): {term} is {value.ToString(CultureInfo.InvariantCulture)}. " +
            "Lower the learning rate or check the data.", value);

    private static void CheckHead(ClipModel model, TaskData task, ClassificationHead head)
    {
        if (head.ClassCount != task.ClassNames.Count)
            throw new ArgumentException(
                $"The head has {head.ClassCount} classes but task '{task.Name}' has {task.ClassNames.Count} ({string.Join(", ", task.ClassNames)}).", nameof(head));
        if (head.EmbeddingDim != model.Config.ProjectionDim)
            throw new ArgumentException(
                $"The head reads {head.EmbeddingDim}-wide embeddings but the model's are {model.Config.ProjectionDim} wide.", nameof(head));
    }

    /// <summary>Only the vision tower learns; returns every tensor's previous requires_grad to restore afterwards.</summary>
    private static Dictionary<Tensor, bool> Freeze(ClipModel model)
    {
        var vision = model.Vision.parameters().ToHashSet<Tensor>(ReferenceEqualityComparer.Instance);
        var before = new Dictionary<Tensor, bool>(ReferenceEqualityComparer.Instance);
        foreach (var t in model.Tensors().Values)
        {
            before[t] = t.requires_grad;
            t.requires_grad_(vision.Contains(t));
        }
        return before;
    }

    private static void Unfreeze(ClipModel model, Dictionary<Tensor, bool> before, IReadOnlyList<TorchSharp.Modules.Parameter> parameters)
    {
        // Gradients are as large as the tower: free them rather than keep them with the model.
        foreach (var p in parameters) p.grad = null;
        foreach (var (t, requiresGrad) in before) t.requires_grad_(requiresGrad);
    }

    private static void Shuffle(int[] order, Random random)
    {
        // Our own Fisher–Yates over Random.Next, whose sequence .NET keeps stable (as ValidationCarve does).
        for (int i = order.Length - 1; i > 0; i--)
        {
            int j = random.Next(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
    }

    private Dictionary<string, string> Metadata(TaskData task, string modelFolder, string headPath, FineTuningResult result)
    {
        var recipe = new Dictionary<string, object?>
        {
            ["learning_rate"] = Options.LearningRate,
            ["weight_decay"] = Options.WeightDecay,
            ["warmup_steps"] = Options.WarmupSteps,
            ["gradient_clip_norm"] = Options.GradientClipNorm,
            ["batch_size"] = Options.BatchSize,
            ["steps"] = result.Steps,
            ["epochs"] = result.Epochs.Count,
            ["seed"] = Options.Seed,
            ["augmentation"] = Options.Augmentation is not null,
            ["validation_accuracy"] = result.ValidationAccuracy,
            ["test_accuracy"] = result.TestAccuracy,
            ["pretrained_validation_accuracy"] = result.PretrainedValidationAccuracy,
            ["pretrained_test_accuracy"] = result.PretrainedTestAccuracy,
        };
        return new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["format"] = TaskVectorFormat,
            ["task"] = task.Name,
            ["source"] = Path.GetFullPath(modelFolder),
            ["head"] = Path.GetFileName(headPath),
            ["class_names"] = JsonSerializer.Serialize(task.ClassNames),
            ["finetuning"] = JsonSerializer.Serialize(recipe),
        };
    }

    private static void SaveCheckpoint(ClipModel model, Checkpoint pretrained, string modelFolder, string folder, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(folder);
        using var scope = NewDisposeScope();
        var vision = model.Vision.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter, StringComparer.Ordinal);
        using var view = new FineTunedCheckpoint(pretrained, vision);
        SafetensorsWriter.Save(view, Path.Combine(folder, "model.safetensors"), pretrained.Metadata, cancellationToken: cancellationToken);
        AtomicFile.WriteAllText(Path.Combine(folder, ClipConfig.HuggingFaceConfigFile), model.Config.ToHuggingFaceJson());
        // The tokenizer too, so the folder is a complete model for zero-shot heads.
        foreach (var file in new[] { ClipTokenizer.VocabFileName, ClipTokenizer.MergesFileName, ClipTokenizer.OpenAIBpeFileName })
        {
            var source = Path.Combine(modelFolder, file);
            if (File.Exists(source)) AtomicFile.Write(Path.Combine(folder, file), s => { using var input = File.OpenRead(source); input.CopyTo(s); });
        }
    }

    private static string Stem(string taskVectorPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(taskVectorPath);
        return taskVectorPath.EndsWith(SafetensorsExtension, StringComparison.OrdinalIgnoreCase)
            ? taskVectorPath[..^SafetensorsExtension.Length]
            : taskVectorPath;
    }
}
