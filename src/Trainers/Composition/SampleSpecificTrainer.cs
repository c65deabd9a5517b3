using System.Text.Json.Nodes;
using Microsoft.ML.TaskVectors.Composition;
using Microsoft.ML.TaskVectors.Data;
using Microsoft.ML.TaskVectors.Images;
using Microsoft.ML.TaskVectors.TaskVectors;
using Microsoft.ML.TaskVectors.Trainers.Variational;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>The sample-specific composition methods (SPEC 2.2-2.3).</summary>
public enum SampleSpecificVariant
{
    /// <summary><c>det-sample</c>: z(x) = μ(x), cross-entropy only.</summary>
    Deterministic,

    /// <summary><c>vi-gaussian</c>: amortised N(μ(x), σ²(x)), sampled in training, μ(x) at test; ELBO.</summary>
    Gaussian,

    /// <summary><c>spike-slab</c>: relaxed Bernoulli inclusion ω times a Gaussian slab; hard ω = 1[π ≥ 0.5] and μ at test; ELBO of eq. 26.</summary>
    SpikeAndSlab,

    /// <summary><c>vtvc</c>: deterministic μ(x) filtered by the uncertainty gate (soft in training, hard at test) with the appendix-B regularisers.</summary>
    Gated,
}

/// <summary>Options of <see cref="SampleSpecificTrainer"/>; the defaults are SPEC 2.3's for the gated method.</summary>
public sealed record SampleSpecificOptions : CompositionTrainerOptions
{
    /// <summary>Creates the options with the gated method's optimiser settings (AdamW lr 5e-4, wd 0.01).</summary>
    public SampleSpecificOptions()
    {
        LearningRate = 5e-4;
        WeightDecay = 0.01;
    }

    /// <summary>Which method.</summary>
    public SampleSpecificVariant Variant { get; init; } = SampleSpecificVariant.Gated;

    /// <summary>
    /// Weight of the KL terms of the probabilistic variants, per sample. With N·M coefficients a full-weight KL
    /// swamps the cross-entropy; 1e-3 matches the gate's global regulariser weight.
    /// </summary>
    public double KlWeight { get; init; } = 1e-3;

    /// <summary>σp of the Gaussian prior N(0, σp²).</summary>
    public double PriorStd { get; init; } = 1.0;

    /// <summary>π0 of the Bernoulli inclusion prior.</summary>
    public double PriorInclusion { get; init; } = 0.5;

    /// <summary>Temperature of the relaxed Bernoulli (spike-and-slab), annealed over training.</summary>
    public TemperatureSchedule Temperature { get; init; } = new();

    /// <summary>The inference network's options (width, initial mean, its own initialisation seed).</summary>
    public InferenceNetworkOptions Network { get; init; } = new();

    /// <summary>The gate's options (the gated variant).</summary>
    public UncertaintyGateOptions Gate { get; init; } = new();
}

/// <summary>A trained sample-specific composition: the inference network, and the gate for the gated method.</summary>
public sealed class SampleSpecificComposition : IDisposable
{
    internal SampleSpecificComposition(SampleSpecificVariant variant, InferenceNetwork network, UncertaintyGate? gate,
        IReadOnlyList<double> epochLosses, IReadOnlyList<double> selectionScores, int bestEpoch)
    {
        Variant = variant;
        Network = network;
        Gate = gate;
        EpochLosses = epochLosses;
        SelectionScores = selectionScores;
        BestEpoch = bestEpoch;
    }

    /// <summary>The method.</summary>
    public SampleSpecificVariant Variant { get; }

    /// <summary>The inference network (in evaluation mode).</summary>
    public InferenceNetwork Network { get; }

    /// <summary>The gate (gated method only; in evaluation mode).</summary>
    public UncertaintyGate? Gate { get; }

    /// <summary>Mean training loss per epoch.</summary>
    public IReadOnlyList<double> EpochLosses { get; }

    /// <summary>Mean normalised selection accuracy per epoch (empty without selection splits).</summary>
    public IReadOnlyList<double> SelectionScores { get; }

    /// <summary>The kept epoch (1-based).</summary>
    public int BestEpoch { get; }

    /// <summary>Test-time coefficients z̃ [B, N, M] and gates Ω [B, N, M] (all ones without a gate) for pre-trained features [B, d].</summary>
    public (Tensor Coefficients, Tensor Gates) Infer(Tensor features)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        Tensor z, gates;
        switch (Variant)
        {
            case SampleSpecificVariant.SpikeAndSlab:
                using (var o = Network.Forward(features, InferenceHeads.Mean | InferenceHeads.InclusionLogits))
                {
                    gates = RelaxedBernoulli.Hard(o.InclusionLogits!);
                    z = o.Mean! * gates;
                }
                break;
            case SampleSpecificVariant.Gated:
                var mean = Network.Mean(features);
                using (var g = Gate!.Forward(features, mean, Network.Mean))
                    (z, gates) = (g.Gated.clone(), g.Gate.clone());
                break;
            default:
                z = Network.Mean(features);
                gates = ones_like(z);
                break;
        }
        return (z.MoveToOuterDisposeScope(), gates.MoveToOuterDisposeScope());
    }

    /// <summary>The learned tensors by name (network.*, gate.*), for <see cref="CompositionState"/>; the live tensors, not copies.</summary>
    public IReadOnlyDictionary<string, Tensor> StateTensors()
    {
        var tensors = Network.state_dict().ToDictionary(kv => "network." + kv.Key, kv => kv.Value);
        if (Gate is not null)
            foreach (var (k, v) in Gate.state_dict()) tensors["gate." + k] = v;
        return tensors;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Network.Dispose();
        Gate?.Dispose();
    }
}

/// <summary>
/// Trains the sample-specific methods: an inference network reads each sample's pre-trained features
/// (computed once and cached) and gives its coefficients; the composed encoder and each sample's own
/// frozen head give the cross-entropy, plus each method's KL or gate terms.
/// </summary>
public sealed class SampleSpecificTrainer(SampleSpecificOptions? options = null)
{
    /// <summary>The options.</summary>
    public SampleSpecificOptions Options { get; } = options ?? new SampleSpecificOptions();

    /// <summary>The method's command-line name.</summary>
    public static string NameOf(SampleSpecificVariant variant) => variant switch
    {
        SampleSpecificVariant.Deterministic => "det-sample",
        SampleSpecificVariant.Gaussian => "vi-gaussian",
        SampleSpecificVariant.SpikeAndSlab => "spike-slab",
        _ => "vtvc",
    };

    /// <summary>Trains on the tasks' training splits; keeps the best epoch on the selection splits when every task has one.</summary>
    /// <exception cref="InvalidOperationException">The loss became NaN or infinite; the message names the epoch, step and term.</exception>
    public SampleSpecificComposition Fit(CompositionEngine engine, IReadOnlyList<CompositionTask> tasks,
        IProgress<CompositionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var o = Options;
        random.manual_seed(o.Seed);
        using var noise = new Generator((ulong)o.Seed + 1);
        int n = engine.TaskCount, m = engine.BlockCount, d = engine.ProjectionDim;
        var network = new InferenceNetwork(d, n, m, o.Network);
        var gate = o.Variant == SampleSpecificVariant.Gated ? new UncertaintyGate(d, n, m, o.Gate) : null;
        network.to(engine.Device);
        gate?.to(engine.Device);
        var trained = new SampleSpecificComposition(o.Variant, network, gate, [], [], 0);
        FeatureCache? features = null;
        var run = CompositionTraining.Run(NameOf(o.Variant), engine, tasks, o, network.parameters().Concat(gate?.parameters() ?? []).ToArray(),
            (pixels, batch, step, totalSteps) =>
            {
                features ??= new FeatureCache(engine, pixels);
                var f = features.Get(batch.Select(i => (tasks[i.Task].Train, i.Index)).ToArray());
                Tensor extra = zeros(1, device: engine.Device).squeeze();
                double? gatedRatio = null;
                var ce = AtlasTrainer.BatchLoss(engine, tasks, t => t.Train, pixels, batch, _ =>
                {
                    switch (o.Variant)
                    {
                        case SampleSpecificVariant.Gaussian:
                        {
                            var q = network.Forward(f, InferenceHeads.Mean | InferenceHeads.LogVariance);
                            extra = o.KlWeight * KlDivergence.Gaussian(q.Mean!, q.LogVariance!, o.PriorStd).sum() / f.shape[0];
                            return q.Mean! + (0.5 * q.LogVariance!).exp() * randn(q.Mean!.shape, generator: noise, device: f.device);
                        }
                        case SampleSpecificVariant.SpikeAndSlab:
                        {
                            var q = network.Forward(f, InferenceHeads.All);
                            extra = o.KlWeight * KlDivergence.SpikeAndSlab(q.InclusionLogits!, q.Mean!, q.LogVariance!, o.PriorInclusion, o.PriorStd).sum() / f.shape[0];
                            var slab = q.Mean! + (0.5 * q.LogVariance!).exp() * randn(q.Mean!.shape, generator: noise, device: f.device);
                            return RelaxedBernoulli.Sample(q.InclusionLogits!, o.Temperature.At(step, totalSteps), noise) * slab;
                        }
                        case SampleSpecificVariant.Gated:
                        {
                            var g = gate!.Forward(f, network.Mean(f), network.Mean);
                            extra = gate.Regularise(g).Total;
                            gatedRatio = UncertaintyGate.GatedRatio(g.Gate);
                            return g.Gated;
                        }
                        default:
                            return network.Mean(f);
                    }
                }, AtlasTrainer.CrossEntropySum);
                return new StepLoss(ce + extra, gatedRatio);
            },
            x => trained.Infer(engine.ForwardBase(x).ImageEmbeds).Coefficients,
            trained.StateTensors,
            isTraining =>
            {
                if (isTraining) { network.train(); gate?.train(); }
                else { network.eval(); gate?.eval(); }
            },
            cosineSchedule: true, progress, cancellationToken,
            reseed: seed =>
            {
                noise.manual_seed(unchecked((long)seed));
                gate?.ReseedDirections(StableHash.Mix(seed));
            });
        return new SampleSpecificComposition(o.Variant, network, gate, run.EpochLosses, run.SelectionScores, run.BestEpoch);
    }

    /// <summary>The options as JSON, for <see cref="CompositionState"/>.</summary>
    public JsonObject OptionsJson() => new()
    {
        ["method"] = NameOf(Options.Variant),
        ["seed"] = Options.Seed,
        ["epochs"] = Options.Epochs,
        ["batch_size"] = Options.BatchSize,
        ["learning_rate"] = Options.LearningRate,
        ["weight_decay"] = Options.WeightDecay,
        ["kl_weight"] = Options.KlWeight,
        ["prior_std"] = Options.PriorStd,
        ["prior_inclusion"] = Options.PriorInclusion,
    };
}
