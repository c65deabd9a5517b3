using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.TaskVectors.Composition;
using Microsoft.ML.TaskVectors.Trainers.Variational;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>
/// <c>prob-task</c> (SPEC 2.2, Table 1): task-level Gaussian coefficients N(μ[t,j], σ²[t,j]); one
/// reparameterised draw per step in training, μ at test; ELBO with the prior N(0, σp²), the KL spread over
/// the training set (the coefficients are global, not per sample).
/// </summary>
public sealed class ProbabilisticTaskTrainer(CompositionTrainerOptions? options = null, double priorStd = 1.0, double initialLogVariance = -6)
{
    /// <summary>The options.</summary>
    public CompositionTrainerOptions Options { get; } = options ?? new CompositionTrainerOptions();

    /// <summary>Learns μ and log σ²; returns μ (the test-time coefficients) as z.</summary>
    public TaskLevelComposition Fit(CompositionEngine engine, IReadOnlyList<CompositionTask> tasks,
        IProgress<CompositionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        random.manual_seed(Options.Seed);
        using var noise = new Generator((ulong)Options.Seed + 1);
        var mean = nn.Parameter(zeros(engine.TaskCount, engine.BlockCount, device: engine.Device));
        var logVariance = nn.Parameter(full(engine.TaskCount, engine.BlockCount, initialLogVariance, device: engine.Device));
        double samples = tasks.Sum(t => (double)t.Train.Count);
        var run = CompositionTraining.Run("prob-task", engine, tasks, Options, [mean, logVariance],
            (pixels, batch, _, _) =>
            {
                var z = mean + (0.5 * logVariance).exp() * randn(mean.shape, generator: noise, device: mean.device);
                var ce = AtlasTrainer.BatchLoss(engine, tasks, t => t.Train, pixels, batch, _ => z, AtlasTrainer.CrossEntropySum);
                return ce + KlDivergence.Gaussian(mean, logVariance, priorStd).sum() / samples;
            },
            _ => mean.detach(), () => new Dictionary<string, Tensor> { ["mean"] = mean, ["log_variance"] = logVariance },
            training: null, cosineSchedule: false, progress, cancellationToken,
            reseed: seed => noise.manual_seed(unchecked((long)seed)),
            settings: new JsonObject { ["prior_std"] = priorStd, ["initial_log_variance"] = initialLogVariance });
        return new TaskLevelComposition(mean.detach().cpu().clone(), run.BestEpoch, run.EpochLosses, run.SelectionScores);
    }
}

/// <summary>
/// <c>atlas-gated</c> (Table 6): aTLAS coefficients z[t,j] filtered by the uncertainty gate; with task-level
/// coefficients the gate sees no sensitivity term (S = 0), only the deviation term and the learned threshold.
/// Soft gate in training, hard gate at test.
/// </summary>
public sealed class GatedAtlasTrainer(CompositionTrainerOptions? options = null, UncertaintyGateOptions? gateOptions = null)
{
    /// <summary>The options.</summary>
    public CompositionTrainerOptions Options { get; } = options ?? new CompositionTrainerOptions();

    /// <summary>Learns z and the gate; returns the hard-gated z̃ as the coefficients, and the gate.</summary>
    public (TaskLevelComposition Composition, Tensor Gates) Fit(CompositionEngine engine, IReadOnlyList<CompositionTask> tasks,
        IProgress<CompositionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        random.manual_seed(Options.Seed);
        var z = nn.Parameter(zeros(engine.TaskCount, engine.BlockCount, device: engine.Device));
        // Coefficients shared by every sample have no spread to measure: V is 0 in training and, against running
        // statistics of a moving z, arbitrary at test. The gate therefore uses sensitivity only (η = 1, S = 0 here).
        var gateSettings = gateOptions ?? new UncertaintyGateOptions { Eta = 1 };
        using var gate = new UncertaintyGate(engine.ProjectionDim, engine.TaskCount, engine.BlockCount, gateSettings);
        gate.to(engine.Device);
        // The gate needs a batch of coefficient sets; every sample of a batch shares z.
        Tensor Batch(long b) => z.unsqueeze(0).expand(b, -1, -1);
        Tensor Gated()
        {
            using var g = gate.Forward(Batch(1));
            return g.Gated[0].clone();
        }
        var run = CompositionTraining.Run("atlas-gated", engine, tasks, Options, [z, .. gate.parameters()],
            (pixels, batch, _, _) =>
            {
                var g = gate.Forward(Batch(batch.Count));
                var ce = AtlasTrainer.BatchLoss(engine, tasks, t => t.Train, pixels, batch, _ => g.Gated[0], AtlasTrainer.CrossEntropySum);
                return new StepLoss(ce + gate.Regularise(g).Total, UncertaintyGate.GatedRatio(g.Gate));
            },
            _ => Gated().detach(),
            () => new Dictionary<string, Tensor>(gate.state_dict().Select(kv => KeyValuePair.Create("gate." + kv.Key, kv.Value))) { ["coefficients"] = z },
            isTraining => { if (isTraining) gate.train(); else gate.eval(); },
            cosineSchedule: false, progress, cancellationToken,
            reseed: gate.ReseedDirections, settings: JsonSerializer.SerializeToNode(gateSettings));
        using var noGrad = no_grad();
        using var final = gate.Forward(Batch(1));
        return (new TaskLevelComposition(final.Gated[0].cpu().clone(), run.BestEpoch, run.EpochLosses, run.SelectionScores), final.Gate[0].cpu().clone());
    }
}
