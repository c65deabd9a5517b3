using Microsoft.ML.TaskVectors.Composition;
using Microsoft.ML.TaskVectors.Data;
using Microsoft.ML.TaskVectors.Images;
using System.Text.Json;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using Microsoft.ML.TaskVectors.Trainers.Tasks;

namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>AdaMerging's coefficient granularity.</summary>
public enum AdaMergingGranularity
{
    /// <summary>One λt per task, shared by every block.</summary>
    TaskWise,

    /// <summary>One λ[t, j] per task and block (build the engine with per-layer blocks for the paper's layer-wise variant).</summary>
    LayerWise,
}

/// <summary>Options of <see cref="AdaMergingTrainer"/>; defaults are SPEC 2.2's.</summary>
public sealed record AdaMergingOptions
{
    /// <summary>Task-wise or layer-wise coefficients.</summary>
    public AdaMergingGranularity Granularity { get; init; } = AdaMergingGranularity.TaskWise;

    /// <summary>Adam steps.</summary>
    public int Steps { get; init; } = 500;

    /// <summary>Adam learning rate.</summary>
    public double LearningRate { get; init; } = 1e-3;

    /// <summary>Initial λ (kept in [0, 1]).</summary>
    public double Initial { get; init; } = 0.3;

    /// <summary>Unlabelled images per step, split evenly between the tasks.</summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>Seeds the order of the unlabelled images.</summary>
    public long Seed { get; init; }

    /// <summary>Keep preprocessed images in memory between steps.</summary>
    public bool CachePixels { get; init; } = true;

    /// <summary>
    /// Where to write a checkpoint every <see cref="CheckpointEvery"/> steps and to resume from one (null = off);
    /// a resumed run ends bit for bit where an uninterrupted one would.
    /// </summary>
    public string? CheckpointDirectory { get; init; }

    /// <summary>Steps between checkpoints.</summary>
    public int CheckpointEvery { get; init; } = 25;
}

/// <summary>
/// AdaMerging (SPEC 2.2): coefficients λ, initialised at 0.3 and clamped to [0, 1], chosen to minimise the
/// entropy of each task head's predictions on unlabelled images of that task. Labels are never read.
/// </summary>
public sealed class AdaMergingTrainer(AdaMergingOptions? options = null)
{
    /// <summary>The options.</summary>
    public AdaMergingOptions Options { get; } = options ?? new AdaMergingOptions();

    /// <summary>Learns λ on the images <paramref name="unlabelled"/> picks per task (each task's training split when null).</summary>
    /// <returns>z [N, M] (task-wise λ repeated over the blocks) and the mean entropy after each step.</returns>
    public (Tensor Coefficients, IReadOnlyList<double> Entropies) Fit(CompositionEngine engine, IReadOnlyList<CompositionTask> tasks,
        Func<CompositionTask, LabeledImageDataset>? unlabelled = null, IProgress<CompositionProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        AtlasTrainer.CheckTasks(engine, tasks);
        if (Options.Steps < 1 || Options.BatchSize < tasks.Count || !(Options.LearningRate > 0) || Options.Initial is < 0 or > 1)
            throw new ArgumentOutOfRangeException(nameof(Options), "AdaMerging needs ≥ 1 step, a batch of at least one image per task, a positive learning rate and an initial λ in [0, 1].");
        unlabelled ??= t => t.Train;
        var pixels = new PixelSource(ClipImagePreprocessor.For(engine.Config), Options.CachePixels);
        long columns = Options.Granularity == AdaMergingGranularity.TaskWise ? 1 : engine.BlockCount;
        var lambda = nn.Parameter(full(engine.TaskCount, columns, Options.Initial, device: engine.Device));
        Tensor Coefficients() => lambda.expand(engine.TaskCount, engine.BlockCount);
        using var optimizer = optim.Adam([lambda], lr: Options.LearningRate);
        var entropies = new List<double>();
        var sizes = tasks.Select(t => unlabelled(t).Count).ToArray();
        var queue = new Queue<MultiTaskBatches.Item[]>();
        int first = 1, epoch = 0;
        var live = new Dictionary<string, Tensor> { ["lambda"] = lambda };
        string method = "adamerging-" + Options.Granularity, fingerprint = Fingerprint(tasks, sizes);
        if (Options.CheckpointDirectory is { } directory
            && TrainingCheckpoint.TryLoad(directory, method, fingerprint, live, optimizer) is { } resumed)
        {
            entropies.AddRange(resumed.Losses);
            first = (int)resumed.Step + 1;
            // Replay the batch order up to the saved step (it depends only on the seed).
            for (int skipped = 0; skipped < resumed.Step; skipped++)
            {
                if (queue.Count == 0)
                    foreach (var b in MultiTaskBatches.ForEpoch(sizes, Options.BatchSize, Options.Seed, ++epoch)) queue.Enqueue(b);
                queue.Dequeue();
            }
            foreach (var t in resumed.Best.Values) t.Dispose();
        }
        for (int step = first; step <= Options.Steps; step++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (queue.Count == 0)
                foreach (var b in MultiTaskBatches.ForEpoch(sizes, Options.BatchSize, Options.Seed, ++epoch)) queue.Enqueue(b);
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var loss = AtlasTrainer.BatchLoss(engine, tasks, unlabelled, pixels, queue.Dequeue(), _ => Coefficients(), EntropySum);
            double value = loss.item<float>();
            if (!double.IsFinite(value))
                throw new InvalidOperationException($"AdaMerging: the entropy became {value} at step {step}; lower the learning rate.");
            loss.backward();
            optimizer.step();
            using (no_grad()) lambda.clamp_(0, 1);
            entropies.Add(value);
            progress?.Report(new CompositionProgress(epoch, step, Options.Steps, value, null));
            if (Options.CheckpointDirectory is { } dir && (step % Options.CheckpointEvery == 0 || step == Options.Steps))
            {
                Directory.CreateDirectory(dir);
                TrainingCheckpoint.Save(dir, method, fingerprint, new TrainingCheckpoint
                {
                    // AdaMerging keeps its last λ: the "best" state is the live one.
                    Epoch = epoch, Step = step, Losses = entropies, Scores = [], BestScore = 0, BestEpoch = 0, Best = live,
                }, live, optimizer);
            }
        }
        return (Coefficients().detach().cpu().clone(), entropies);
    }

    private string Fingerprint(IReadOnlyList<CompositionTask> tasks, int[] sizes)
    {
        var o = JsonSerializer.SerializeToNode(Options)!.AsObject();
        foreach (var key in new[] { nameof(AdaMergingOptions.CheckpointDirectory), nameof(AdaMergingOptions.CachePixels), nameof(AdaMergingOptions.Steps), nameof(AdaMergingOptions.CheckpointEvery) })
            o.Remove(key);
        o["tasks"] = string.Join(",", tasks.Select((t, i) => $"{t.Name}:{sizes[i]}"));
        return o.ToJsonString();
    }

    /// <summary>Σ over samples of the entropy of softmax(logits); the labels are ignored.</summary>
    internal static Tensor EntropySum(Tensor logits, Tensor labels)
    {
        var logP = F.log_softmax(logits, 1);
        return -(logP.exp() * logP).sum();
    }
}
