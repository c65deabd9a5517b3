using Microsoft.ML.TaskVectors.Composition;
using Microsoft.ML.TaskVectors.Data;
using Microsoft.ML.TaskVectors.Runtime;
using Microsoft.ML.TaskVectors.Trainers.Variational;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using Microsoft.ML.TaskVectors.Trainers.Tasks;

namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>
/// Task negation with the asymmetric gate (SPEC 2.2, review discussion): θ0 + Σt z̃[t]·τt over the target's task vector
/// and the controls' (one task per task vector), z̃ = Ω·z task-level coefficients through the uncertainty gate (as
/// gated aTLAS) with a lower threshold for the target's coefficients. Loss per mixed batch:
/// −w·min(CE, cap) on target samples + CE on control samples, each through its own head, plus the gate's regulariser.
/// The clamp bounds the loss below (−w·cap), so pushing the target away cannot diverge, and samples already confidently
/// wrong stop pulling. The model kept is chosen by <see cref="NegationSelection"/> among every epoch of every
/// target threshold scale tried, on the selection splits (each task's training split when it has none).
/// </summary>
public sealed class TaskNegationTrainer(TaskNegationOptions? options = null)
{
    /// <summary>The options.</summary>
    public TaskNegationOptions Options { get; } = options ?? new TaskNegationOptions();

    /// <summary>Learns the negation and returns the chosen coefficients, gates and accuracies before and after.</summary>
    /// <param name="engine">The engine over the tasks' task vectors (target and controls).</param>
    /// <param name="targetTask">Index of the task to forget; every other task is a control.</param>
    /// <param name="tasks">One task per task vector, in the engine's order; at least one control.</param>
    /// <param name="progress">Training progress of each run.</param>
    /// <param name="cancellationToken">Stops training.</param>
    /// <exception cref="ArgumentException">The tasks do not match the engine, there is no control task, or an option is out of range.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="targetTask"/> is not a task index.</exception>
    /// <exception cref="InvalidOperationException">A loss term became NaN or infinite; the message names the step and the term.</exception>
    public TaskNegationResult Fit(CompositionEngine engine, int targetTask, IReadOnlyList<CompositionTask> tasks,
        IProgress<CompositionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(tasks);
        AtlasTrainer.CheckTasks(engine, tasks);
        if ((uint)targetTask >= (uint)tasks.Count)
            throw new ArgumentOutOfRangeException(nameof(targetTask), targetTask, $"The target task must be an index in [0, {tasks.Count - 1}].");
        if (tasks.Count < 2)
            throw new ArgumentException($"Task negation needs the target and at least one control task (with its task vector; a zero task vector will do); {tasks.Count} task was given.", nameof(tasks));
        var o = Options;
        o.ValidateNegation(tasks.Count);
        o.Gate.Validate(tasks.Count);

        // Selection accuracies are measured on these splits; CompositionTraining.Run sees tasks without one so that it keeps
        // every epoch and leaves the choice to the negation's own rule.
        static LabeledImageDataset SelectionSplit(CompositionTask t) => t.Selection ?? t.Train;
        var trainingTasks = tasks.Select(t => t with { Selection = null }).ToArray();
        var pixels = new PixelSource(Images.ClipImagePreprocessor.For(engine.Config), o.CachePixels);
        var before = Summarise(CompositionEvaluator.Accuracy(engine, tasks, SelectionSplit, null, pixels, o.EvaluationBatchSize, cancellationToken), targetTask);
        double cap = o.MaxTargetLoss ?? 2 * Math.Log(Math.Max(2, tasks[targetTask].Head.ClassCount));

        var candidates = new List<NegationCandidate>();
        var snapshots = new List<(Tensor Coefficients, Tensor Gates)>();
        try
        {
            foreach (double scale in o.TargetThresholdScales)
            {
                random.manual_seed(o.Seed);
                var z = nn.Parameter(zeros(engine.TaskCount, engine.BlockCount, device: engine.Device));
                using var gate = new UncertaintyGate(engine.ProjectionDim, engine.TaskCount, engine.BlockCount, o.Gate);
                var scales = o.Gate.TaskThresholdScales?.ToArray() ?? Enumerable.Repeat(1.0, tasks.Count).ToArray();
                scales[targetTask] = scale;
                using (no_grad()) gate.ThresholdScale.copy_(tensor(scales.Select(s => (float)s).ToArray()));
                gate.to(engine.Device);
                // The gate needs a batch of coefficient sets; every sample of a batch shares z.
                Tensor Batch(long b) => z.unsqueeze(0).expand(b, -1, -1);
                (Tensor Coefficients, Tensor Gates) Hard()
                {
                    gate.eval();
                    using var g = gate.Forward(Batch(1));
                    return (g.Gated[0].detach().cpu().clone().DetachFromDisposeScope(), g.Gate[0].detach().cpu().clone().DetachFromDisposeScope());
                }

                int epoch = 0;
                double epochLoss = 0;
                // CompositionTraining.Run has no per-epoch hook other than progress: its last step of an epoch is reported
                // after the optimiser step, so the model seen here is that epoch's final one.
                var hook = new SynchronousProgress<CompositionProgress>(p =>
                {
                    progress?.Report(p);
                    epochLoss += p.Loss;
                    if (p.Step != p.Steps || p.SelectionScore is not null) return;
                    epoch++;
                    bool wasTraining = gate.training;
                    var hard = Hard();
                    snapshots.Add(hard);
                    var accuracy = CompositionEvaluator.Accuracy(engine, tasks, SelectionSplit, _ => hard.Coefficients, pixels, o.EvaluationBatchSize, cancellationToken);
                    candidates.Add(new NegationCandidate(scale, epoch, Summarise(accuracy, targetTask), epochLoss / p.Steps));
                    epochLoss = 0;
                    if (wasTraining) gate.train();
                });
                CompositionTraining.Run("negation", engine, trainingTasks, o, [z, .. gate.parameters()],
                    (px, batch, step, total) =>
                    {
                        var g = gate.Forward(Batch(batch.Count));
                        return BatchLoss(engine, tasks, targetTask, px, batch, g.Gated[0], o.TargetWeight, cap, step, total) + gate.Regularise(g).Total;
                    },
                    _ => Hard().Coefficients,
                    () => new Dictionary<string, Tensor>(gate.state_dict().Select(kv => KeyValuePair.Create("gate." + kv.Key, kv.Value))) { ["coefficients"] = z },
                    isTraining => { if (isTraining) gate.train(); else gate.eval(); },
                    cosineSchedule: false, hook, cancellationToken);
            }
            var (index, met) = NegationSelection.Choose(candidates.Select(c => c.Accuracy).ToArray(), before.Control, o.MinControlRatio);
            var chosen = snapshots[index];
            return new TaskNegationResult(chosen.Coefficients.clone(), chosen.Gates.clone(), targetTask, before, candidates[index].Accuracy,
                candidates[index], met, candidates);
        }
        finally
        {
            foreach (var (c, g) in snapshots)
            {
                c.Dispose();
                g.Dispose();
            }
        }
    }

    /// <summary>Target accuracy and the mean control accuracy from per-task accuracies.</summary>
    internal static NegationAccuracy Summarise(IReadOnlyList<double> accuracy, int targetTask) =>
        new(accuracy[targetTask], accuracy.Where((_, i) => i != targetTask).Average());

    /// <summary>
    /// Mean over the batch of −w·min(CE, cap) for target samples and CE for control samples, each through its own
    /// head; throws on a non-finite term, naming it and the step.
    /// </summary>
    internal static Tensor BatchLoss(CompositionEngine engine, IReadOnlyList<CompositionTask> tasks, int targetTask, PixelSource pixels,
        IReadOnlyList<MultiTaskBatches.Item> batch, Tensor coefficients, double targetWeight, double cap, long step, long totalSteps)
    {
        var x = pixels.Batch(batch.Select(item => (tasks[item.Task].Train, item.Index)).ToArray(), engine.Device);
        using var output = engine.Forward(x, coefficients);
        var target = zeros(1, device: engine.Device);
        var control = zeros(1, device: engine.Device);
        // Batches hold each task's samples as one contiguous run.
        int start = 0;
        while (start < batch.Count)
        {
            int task = batch[start].Task, end = start;
            while (end < batch.Count && batch[end].Task == task) end++;
            var data = tasks[task].Train;
            var labels = tensor(batch.Skip(start).Take(end - start).Select(item => (long)data.GetLabel(item.Index)).ToArray(), device: engine.Device);
            var ce = F.cross_entropy(tasks[task].Head.Logits(output.ImageEmbeds.narrow(0, start, end - start)), labels, reduction: nn.Reduction.None);
            if (task == targetTask) target = target - targetWeight * ce.clamp_max(cap).sum();
            else control = control + ce.sum();
            start = end;
        }
        foreach (var (term, value) in new[] { ("target term −min(CE, cap)", target), ("control term CE", control) })
        {
            double v = value.item<float>();
            if (!double.IsFinite(v))
                throw new InvalidOperationException($"negation: the {term} became {v} at step {step + 1} of {totalSteps}; lower the learning rate.");
        }
        return ((target + control) / batch.Count).squeeze();
    }
}
