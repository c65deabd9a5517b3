using Microsoft.ML.TaskVectors.Heads;
using Microsoft.ML.TaskVectors.Images;
using Microsoft.ML.TaskVectors.Runtime;

namespace Microsoft.ML.TaskVectors.Trainers.FineTuning;

/// <summary>
/// Options of a <see cref="FineTuner"/>. The defaults are the task_vectors recipe (Ilharco et al.,
/// <c>src/finetune.py</c>): AdamW with learning rate 1e-5 and weight decay 0.1 on every vision parameter, batch 128,
/// 500 warm-up steps then a cosine decay, gradient norm clipped to 1, open_clip's training augmentation
/// (a random resized crop of 90-100 % of the area, no flip).
/// </summary>
public sealed record FineTuningOptions
{
    /// <summary>open_clip's training transform: <c>RandomResizedCrop(scale=(0.9, 1.0))</c>, bicubic, no flip, no colour jitter.</summary>
    public static ImageAugmentationOptions OpenClipTrainingAugmentation { get; } = new() { MinScale = 0.9, MaxScale = 1.0, FlipProbability = 0 };

    /// <summary>
    /// The epochs task_vectors fine-tunes each of its tasks for (about 2,000 steps of batch 128 each), by task name
    /// ignoring case.
    /// </summary>
    public static IReadOnlyDictionary<string, int> RecipeEpochs { get; } = new Dictionary<string, int>(StringComparer.OrdinalIgnoreCase)
    {
        ["Cars"] = 35,
        ["DTD"] = 76,
        ["EuroSAT"] = 12,
        ["GTSRB"] = 11,
        ["MNIST"] = 5,
        ["RESISC45"] = 15,
        ["SUN397"] = 14,
        ["SVHN"] = 4,
        ["ImageNet"] = 4,
    };

    /// <summary>Peak learning rate of AdamW (default 1e-5).</summary>
    public double LearningRate { get; init; } = 1e-5;

    /// <summary>AdamW's decoupled weight decay (default 0.1).</summary>
    public double WeightDecay { get; init; } = 0.1;

    /// <summary>AdamW's β1 (default 0.9).</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>AdamW's β2 (default 0.999).</summary>
    public double Beta2 { get; init; } = 0.999;

    /// <summary>AdamW's ε (default 1e-8).</summary>
    public double Epsilon { get; init; } = 1e-8;

    /// <summary>Linear warm-up steps before the cosine decay (default 500); see <see cref="WarmupCosineSchedule"/>.</summary>
    public int WarmupSteps { get; init; } = 500;

    /// <summary>The largest L2 norm of all gradients together; larger gradients are scaled down (default 1). Null: no clipping.</summary>
    public double? GradientClipNorm { get; init; } = 1.0;

    /// <summary>Training images per step (default 128). The last batch of an epoch may be smaller.</summary>
    public int BatchSize { get; init; } = 128;

    /// <summary>Passes over the training split (default 10), unless <see cref="Steps"/> is set.</summary>
    public int Epochs { get; init; } = 10;

    /// <summary>
    /// When set, the run makes exactly this many optimizer steps (the last epoch may stop part-way), whatever
    /// <see cref="Epochs"/> says.
    /// </summary>
    public int? Steps { get; init; }

    /// <summary>Images per forward pass when evaluating and computing features (default 256).</summary>
    public int EvaluationBatchSize { get; init; } = 256;

    /// <summary>
    /// Training augmentation (default <see cref="OpenClipTrainingAugmentation"/>); its output size is always the model's input
    /// size. Null trains on the evaluation preprocessing (resize, centre crop).
    /// </summary>
    public ImageAugmentationOptions? Augmentation { get; init; } = OpenClipTrainingAugmentation;

    /// <summary>The head built when the caller gives none (default zero-shot, as task_vectors).</summary>
    public FineTuningHeadKind Head { get; init; } = FineTuningHeadKind.ZeroShot;

    /// <summary>Prompt templates of a zero-shot head; by default those of the task's name (<see cref="FineTuner.TemplatesFor"/>).</summary>
    public IReadOnlyList<string>? Templates { get; init; }

    /// <summary>Options of a linear-probe head (its defaults when null).</summary>
    public LinearProbeOptions? LinearProbe { get; init; }

    /// <summary>Whether to measure the pre-trained model's validation and test accuracy first (default true).</summary>
    public bool EvaluatePretrained { get; init; } = true;

    /// <summary>Whether to measure validation accuracy after every epoch (default true); otherwise only after the last.</summary>
    public bool EvaluateEveryEpoch { get; init; } = true;

    /// <summary>
    /// Seed of the training order and the augmentation (default 0). The same seed, data and options give the same task
    /// vector bit for bit on the CPU.
    /// </summary>
    public int Seed { get; init; }

    /// <summary>Where to train: <c>auto</c> (default), <c>cpu</c>, <c>cuda</c> or <c>cuda:N</c> (see <see cref="ComputeDevice.Resolve"/>).</summary>
    public string Device { get; init; } = ComputeDevice.Auto;

    /// <summary>Refuse to fall back to the CPU when the requested CUDA device cannot be used (default false).</summary>
    public bool RequireDevice { get; init; }

    /// <summary>Also write the whole fine-tuned model as a model folder next to the task vector (default false).</summary>
    public bool SaveCheckpoint { get; init; }

    /// <summary>The epochs of the task_vectors recipe for a task name, or null when the task is not one of its nine.</summary>
    public static int? RecipeEpochsFor(string taskName)
    {
        ArgumentNullException.ThrowIfNull(taskName);
        var name = taskName.Trim();
        if (RecipeEpochs.TryGetValue(name, out var epochs)) return epochs;
        return name.EndsWith("Val", StringComparison.OrdinalIgnoreCase) && RecipeEpochs.TryGetValue(name[..^3], out epochs) ? epochs : null;
    }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first option out of range.</summary>
    public void Validate()
    {
        Require(double.IsFinite(LearningRate) && LearningRate > 0, nameof(LearningRate), $"must be a finite positive number; got {LearningRate}");
        Require(double.IsFinite(WeightDecay) && WeightDecay >= 0, nameof(WeightDecay), $"must be a finite number ≥ 0; got {WeightDecay}");
        Require(Beta1 >= 0 && Beta1 < 1, nameof(Beta1), $"must be in [0, 1); got {Beta1}");
        Require(Beta2 >= 0 && Beta2 < 1, nameof(Beta2), $"must be in [0, 1); got {Beta2}");
        Require(double.IsFinite(Epsilon) && Epsilon > 0, nameof(Epsilon), $"must be a finite positive number; got {Epsilon}");
        Require(WarmupSteps >= 0, nameof(WarmupSteps), $"must be 0 or more; got {WarmupSteps}");
        Require(GradientClipNorm is null || (double.IsFinite(GradientClipNorm.Value) && GradientClipNorm > 0), nameof(GradientClipNorm),
            $"must be a finite positive number or null (no clipping); got {GradientClipNorm}");
        Require(BatchSize >= 1, nameof(BatchSize), $"must be at least 1; got {BatchSize}");
        Require(Epochs >= 1, nameof(Epochs), $"must be at least 1; got {Epochs}");
        Require(Steps is null || Steps >= 1, nameof(Steps), $"must be at least 1 when set; got {Steps}");
        Require(EvaluationBatchSize >= 1, nameof(EvaluationBatchSize), $"must be at least 1; got {EvaluationBatchSize}");
        Require(Enum.IsDefined(Head), nameof(Head), $"must be ZeroShot or Linear; got {Head}");
        Require(Templates is null || (Templates.Count > 0 && Templates.All(t => t is not null && t.Contains(PromptTemplates.Placeholder, StringComparison.Ordinal))),
            nameof(Templates), $"must hold at least one template, each with a {PromptTemplates.Placeholder} placeholder");
        Require(Device is not null, nameof(Device), "must be auto, cpu, cuda or cuda:N");
        try
        {
            Augmentation?.Validate();
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"FineTuningOptions.{nameof(Augmentation)}: {e.Message}", nameof(Augmentation), e);
        }
    }

    private static void Require(bool condition, string option, string problem)
    {
        if (!condition) throw new ArgumentException($"FineTuningOptions.{option} {problem}.", option);
    }
}
