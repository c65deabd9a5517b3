using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.Variational;

/// <summary>
/// The uncertainty gate of the gated sampling method (SPEC section 2.3, paper section 4.3): it scores every coefficient
/// z[b, t, j] by an uncertainty U, compares |z| with a threshold Γ that rises with U, and keeps the reliable, large
/// coefficients: z̃ = Ω·z.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>U = η·S + (1 − η)·V. S = |z(x + ε·u) − z(x)| / ε, one finite difference along a unit direction u shared by the
/// batch, ε = 1e-2·‖x‖ per sample, divided per coefficient by its running mean. V = |z − μ| / √(σ² + 1e-5) per
/// coefficient, with the batch's mean and (biased) variance in training and running statistics at inference, as batch
/// normalisation does, so a sample is scored the same alone or in any batch.</item>
/// <item>Running statistics (mean and unbiased variance of z, mean of S) are exponential moving averages with momentum
/// 0.1, except that the first training batch sets them directly: starting from batch normalisation's 0 and 1 would bias
/// them for tens of batches at coefficient scales of a few hundredths. Before any training batch they are 0, 1 and 1.</item>
/// <item>Γ = ψ1·(1 + ψ2·U) with ψ = exp(log ψ) learnable (so ψ stays positive), times an optional per-task scale
/// (the asymmetric gate of task negation).</item>
/// <item>Training gate Ω = sigmoid(κ·(|z| − Γ)), κ = 20; inference gate Ω = 1[|z| ≥ Γ]. Which one follows
/// <c>train()</c>/<c>eval()</c>. At z = 0 the soft gate passes gradient through z̃ = Ω·z: ∂z̃/∂z = sigmoid(−κ·Γ).</item>
/// <item>Training draws a fresh u per batch from the gate's own seeded generator; inference uses one direction fixed at
/// construction and saved in the state. The generator's position is not part of <c>state_dict</c>.</item>
/// </list>
/// State (<c>state_dict</c>): parameters log_psi1, log_psi2; buffers running_mean, running_var, sensitivity_mean
/// ([N, M]), num_batches_tracked, direction ([d]) and threshold_scale ([N]).
/// </remarks>
public sealed class UncertaintyGate : nn.Module
{
    /// <summary>The smallest finite-difference step, for an all-zero feature vector.</summary>
    public const double MinimumStep = 1e-12;

    [ComponentName(Name = "log_psi1")] private Parameter _logPsi1;
    [ComponentName(Name = "log_psi2")] private Parameter _logPsi2;
    [ComponentName(Name = "running_mean")] private Tensor _runningMean;
    [ComponentName(Name = "running_var")] private Tensor _runningVar;
    [ComponentName(Name = "sensitivity_mean")] private Tensor _sensitivityMean;
    [ComponentName(Name = "num_batches_tracked")] private Tensor _batchesTracked;
    [ComponentName(Name = "direction")] private Tensor _direction;
    [ComponentName(Name = "threshold_scale")] private Tensor _thresholdScale;
    private readonly Generator _generator;
    private readonly UncertaintyGateOptions _options;

    /// <summary>Creates a gate for coefficients [B, <paramref name="tasks"/>, <paramref name="blocks"/>].</summary>
    /// <param name="featureDim">d, the width of the feature vectors S perturbs.</param>
    /// <param name="tasks">N, the number of task vectors.</param>
    /// <param name="blocks">M, the number of blocks per task vector.</param>
    /// <param name="options">Every choice of SPEC 2.3 (its defaults when null). The gate keeps a copy.</param>
    /// <exception cref="ArgumentException">A size is not positive or an option is out of range.</exception>
    public UncertaintyGate(int featureDim, int tasks, int blocks, UncertaintyGateOptions? options = null) : base(nameof(UncertaintyGate))
    {
        if (featureDim < 1) throw new ArgumentException($"featureDim must be at least 1, found {featureDim}.", nameof(featureDim));
        if (tasks < 1) throw new ArgumentException($"tasks must be at least 1, found {tasks}.", nameof(tasks));
        if (blocks < 1) throw new ArgumentException($"blocks must be at least 1, found {blocks}.", nameof(blocks));
        options ??= new UncertaintyGateOptions();
        options.Validate(tasks);
        _options = Copy(options);
        FeatureDim = featureDim;
        Tasks = tasks;
        Blocks = blocks;

        _generator = new Generator((ulong)options.Seed);
        _logPsi1 = nn.Parameter(tensor(Math.Log(options.InitialPsi1), ScalarType.Float32));
        _logPsi2 = nn.Parameter(tensor(Math.Log(options.InitialPsi2), ScalarType.Float32));
        _runningMean = zeros(tasks, blocks).DetachFromDisposeScope();
        _runningVar = ones(tasks, blocks).DetachFromDisposeScope();
        _sensitivityMean = ones(tasks, blocks).DetachFromDisposeScope();
        _batchesTracked = tensor(0L).DetachFromDisposeScope();
        _direction = DrawDirection(ScalarType.Float32).DetachFromDisposeScope();
        var scales = options.TaskThresholdScales?.Select(s => (float)s).ToArray() ?? Enumerable.Repeat(1f, tasks).ToArray();
        _thresholdScale = tensor(scales).DetachFromDisposeScope();
        RegisterComponents();
    }

    /// <summary>d, the feature width.</summary>
    public int FeatureDim { get; }

    /// <summary>N, the number of task vectors.</summary>
    public int Tasks { get; }

    /// <summary>M, the number of blocks per task vector.</summary>
    public int Blocks { get; }

    /// <summary>log ψ1, learnable.</summary>
    public Parameter LogPsi1 => _logPsi1;

    /// <summary>log ψ2, learnable.</summary>
    public Parameter LogPsi2 => _logPsi2;

    /// <summary>ψ1 = exp(log ψ1), the base threshold.</summary>
    public double Psi1 => Math.Exp(_logPsi1.ToDouble());

    /// <summary>ψ2 = exp(log ψ2), the threshold's sensitivity to uncertainty.</summary>
    public double Psi2 => Math.Exp(_logPsi2.ToDouble());

    /// <summary>Running mean of z per coefficient [N, M] (used by V at inference).</summary>
    public Tensor RunningMean => _runningMean;

    /// <summary>Running unbiased variance of z per coefficient [N, M] (used by V at inference).</summary>
    public Tensor RunningVariance => _runningVar;

    /// <summary>Running mean of the raw sensitivity per coefficient [N, M] (S is divided by it).</summary>
    public Tensor SensitivityMean => _sensitivityMean;

    /// <summary>How many training batches have updated the running statistics.</summary>
    public long BatchesTracked => _batchesTracked.item<long>();

    /// <summary>The unit direction u [d] used at inference (and in training when directions are not resampled).</summary>
    public Tensor Direction => _direction;

    /// <summary>The per-task threshold scales [N].</summary>
    public Tensor ThresholdScale => _thresholdScale;

    /// <summary>
    /// Gates coefficients that do not depend on the input (gated aTLAS) or whose sensitivity is not wanted: S = 0, so
    /// U = (1 − η)·V.
    /// </summary>
    /// <param name="coefficients">z [B, N, M]; B ≥ 2 in training, where batch statistics are needed.</param>
    public GateOutput Forward(Tensor coefficients) => Run(null, coefficients, null);

    /// <summary>Gates per-sample coefficients z = μ(x), with S from one finite difference of <paramref name="meanFunction"/>.</summary>
    /// <param name="features">x [B, d], the inputs <paramref name="coefficients"/> were computed from.</param>
    /// <param name="coefficients">z = meanFunction(x) [B, N, M]; B ≥ 2 in training.</param>
    /// <param name="meanFunction">x [B, d] → μ(x) [B, N, M], e.g. <see cref="InferenceNetwork.Mean"/>; gradients flow through it.</param>
    public GateOutput Forward(Tensor features, Tensor coefficients, Func<Tensor, Tensor> meanFunction)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(meanFunction);
        return Run(features, coefficients, meanFunction);
    }

    private GateOutput Run(Tensor? features, Tensor z, Func<Tensor, Tensor>? meanFunction)
    {
        CheckCoefficients(z);
        long batch = z.shape[0];
        bool training = this.training;
        if (training && batch < 2)
            throw new ArgumentException($"The uncertainty gate in training mode needs at least 2 samples per batch for the batch statistics of V, found {batch}; call eval() to gate single samples with the running statistics.", nameof(z));

        using var scope = NewDisposeScope();
        var dtype = z.dtype;
        var sensitivity = meanFunction is null ? zeros_like(z) : RawSensitivity(features!, z, meanFunction, training);
        if (training) UpdateRunningStatistics(z, sensitivity);

        var normalisedSensitivity = sensitivity / (_sensitivityMean.to(dtype, z.device) + _options.SensitivityEpsilon);
        var (mean, variance) = training
            ? (z.mean([0], keepdim: true), z.var(0, unbiased: false, keepdim: true))
            : (_runningMean.to(dtype, z.device), _runningVar.to(dtype, z.device));
        var deviation = (z - mean).abs() / (variance + _options.VarianceEpsilon).sqrt();
        var uncertainty = _options.Eta * normalisedSensitivity + (1 - _options.Eta) * deviation;

        var psi1 = _logPsi1.exp().to(dtype);
        var psi2 = _logPsi2.exp().to(dtype);
        var threshold = psi1 * (1 + psi2 * uncertainty) * _thresholdScale.to(dtype, z.device).view(Tasks, 1);
        var magnitude = z.abs();
        var logits = _options.Sharpness * (magnitude - threshold);
        var gate = training ? logits.sigmoid() : magnitude.ge(threshold).to(dtype);
        var gated = gate * z;
        return new GateOutput(
            z.alias().MoveToOuterDisposeScope(), gate.MoveToOuterDisposeScope(), gated.MoveToOuterDisposeScope(),
            normalisedSensitivity.MoveToOuterDisposeScope(), deviation.MoveToOuterDisposeScope(), uncertainty.MoveToOuterDisposeScope(),
            threshold.MoveToOuterDisposeScope(), logits.MoveToOuterDisposeScope(), !training);
    }

    /// <summary>|z(x + ε·u) − z(x)| / ε with ε = scale·‖x‖ per sample.</summary>
    private Tensor RawSensitivity(Tensor features, Tensor z, Func<Tensor, Tensor> meanFunction, bool training)
    {
        long batch = z.shape[0];
        if (features.ndim != 2 || features.shape[0] != batch || features.shape[1] != FeatureDim)
            throw new ArgumentException($"The gate expects features [{batch}, {FeatureDim}] (one row per coefficient sample), found [{string.Join(", ", features.shape)}].", nameof(features));
        if (!features.is_floating_point())
            throw new ArgumentException($"The gate expects floating-point features, found {features.dtype}.", nameof(features));
        var direction = training && _options.ResampleDirectionEachBatch ? DrawDirection(features.dtype) : _direction;
        var step = (features.norm(1, keepdim: true) * _options.SensitivityStepScale).clamp_min(MinimumStep);
        var perturbed = meanFunction(features + step * direction.to(features.dtype, features.device));
        if (!perturbed.shape.AsSpan().SequenceEqual(z.shape))
            throw new ArgumentException($"The mean function must return coefficients [{string.Join(", ", z.shape)}] for features [{batch}, {FeatureDim}], found [{string.Join(", ", perturbed.shape)}].", "meanFunction");
        return (perturbed - z).abs() / step.to(z.dtype).view(batch, 1, 1);
    }

    private void UpdateRunningStatistics(Tensor z, Tensor sensitivity)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var detached = z.detach();
        var batchMean = detached.mean([0]);
        var batchVariance = detached.var(0, unbiased: true);
        var sensitivityMean = sensitivity.detach().mean([0]);
        if (BatchesTracked == 0)
        {
            _runningMean.copy_(batchMean);
            _runningVar.copy_(batchVariance);
            _sensitivityMean.copy_(sensitivityMean);
        }
        else
        {
            double m = _options.Momentum;
            _runningMean.mul_(1 - m).add_(batchMean.to(_runningMean.dtype) * m);
            _runningVar.mul_(1 - m).add_(batchVariance.to(_runningVar.dtype) * m);
            _sensitivityMean.mul_(1 - m).add_(sensitivityMean.to(_sensitivityMean.dtype) * m);
        }
        _batchesTracked.add_(1);
    }

    /// <summary>
    /// The regularisers of appendix B for one gate output, as named terms (see <see cref="GateRegularisation"/>); the
    /// Bernoulli KL uses the gate's logits in training and the hard 0/1 gate at inference.
    /// </summary>
    public GateRegularisation Regularise(GateOutput output)
    {
        ArgumentNullException.ThrowIfNull(output);
        var o = _options;
        using var scope = NewDisposeScope();
        static Tensor PerSample(Tensor t) => t.flatten(1).sum(1).mean();
        var boundary = PerSample((o.BoundaryMargin - (output.Coefficients.abs() - output.Threshold).abs()).clamp_min(0));
        var exploration = -((_logPsi1.exp() - o.InitialPsi1).abs() + o.ExplorationEpsilon).log()
            - ((_logPsi2.exp() - o.InitialPsi2).abs() + o.ExplorationEpsilon).log();
        var uncertainty = PerSample(output.Uncertainty * output.Gate);
        var inclusionKl = PerSample(output.IsHard
            ? KlDivergence.Bernoulli(output.Gate, o.PriorInclusion)
            : KlDivergence.BernoulliFromLogits(output.GateLogits, o.PriorInclusion));
        double variance = o.PriorStd * o.PriorStd;
        var priorNll = PerSample(output.Gated.square() / (2 * variance) + 0.5 * Math.Log(2 * Math.PI * variance));
        var total = o.GlobalWeight * (o.BoundaryWeight * boundary + o.ExplorationWeight * exploration.to(boundary.dtype)
            + o.UncertaintyWeight * uncertainty + o.PriorWeight * (inclusionKl + priorNll));
        return new GateRegularisation(
            boundary.MoveToOuterDisposeScope(), exploration.MoveToOuterDisposeScope(), uncertainty.MoveToOuterDisposeScope(),
            inclusionKl.MoveToOuterDisposeScope(), priorNll.MoveToOuterDisposeScope(), total.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The gated ratio: the fraction of coefficients with Ω = 1. Counted as Ω ≥ 0.5, which for a soft gate is exactly the
    /// hard rule |z| ≥ Γ, so training and inference outputs give the same ratio.
    /// </summary>
    /// <param name="gate">Ω [B, N, …].</param>
    public static double GatedRatio(Tensor gate)
    {
        ArgumentNullException.ThrowIfNull(gate);
        if (gate.numel() == 0) throw new ArgumentException("The gate tensor is empty; the gated ratio needs at least one coefficient.", nameof(gate));
        using var scope = NewDisposeScope();
        return gate.detach().ge(0.5).to(ScalarType.Float64).mean().ToDouble();
    }

    /// <summary>The gated ratio per task: for Ω [B, N, …], the fraction of Ω = 1 over samples and blocks for each of the N tasks.</summary>
    public static double[] GatedRatioPerTask(Tensor gate)
    {
        ArgumentNullException.ThrowIfNull(gate);
        if (gate.ndim < 2 || gate.numel() == 0)
            throw new ArgumentException($"The gate must be a non-empty [B, N, …] tensor, found [{string.Join(", ", gate.shape)}].", nameof(gate));
        using var scope = NewDisposeScope();
        var perTask = gate.detach().ge(0.5).to(ScalarType.Float64).transpose(0, 1).reshape(gate.shape[1], -1).mean([1]);
        return perTask.data<double>().ToArray();
    }

    /// <summary>
    /// Reseeds the generator of the per-batch training directions; trainers call it every step with a seed derived from
    /// the step, so a run resumed from a checkpoint draws the same directions as an uninterrupted one.
    /// </summary>
    internal void ReseedDirections(ulong seed) => _generator.manual_seed(unchecked((long)seed));

    private Tensor DrawDirection(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var u = randn([FeatureDim], generator: _generator, dtype: ScalarType.Float64);
        return (u / u.norm()).to(dtype).MoveToOuterDisposeScope();
    }

    private void CheckCoefficients(Tensor z)
    {
        ArgumentNullException.ThrowIfNull(z);
        if (z.ndim != 3 || z.shape[1] != Tasks || z.shape[2] != Blocks || z.shape[0] < 1)
            throw new ArgumentException($"The gate expects coefficients [B, {Tasks}, {Blocks}] with B ≥ 1, found [{string.Join(", ", z.shape)}].", "coefficients");
        if (!z.is_floating_point())
            throw new ArgumentException($"The gate expects floating-point coefficients, found {z.dtype}.", "coefficients");
    }

    private static UncertaintyGateOptions Copy(UncertaintyGateOptions o) => new()
    {
        Eta = o.Eta, InitialPsi1 = o.InitialPsi1, InitialPsi2 = o.InitialPsi2, Sharpness = o.Sharpness, Momentum = o.Momentum,
        SensitivityStepScale = o.SensitivityStepScale, ResampleDirectionEachBatch = o.ResampleDirectionEachBatch,
        VarianceEpsilon = o.VarianceEpsilon, SensitivityEpsilon = o.SensitivityEpsilon,
        TaskThresholdScales = o.TaskThresholdScales?.ToArray(), BoundaryMargin = o.BoundaryMargin, BoundaryWeight = o.BoundaryWeight,
        ExplorationWeight = o.ExplorationWeight, ExplorationEpsilon = o.ExplorationEpsilon, UncertaintyWeight = o.UncertaintyWeight,
        PriorInclusion = o.PriorInclusion, PriorStd = o.PriorStd, PriorWeight = o.PriorWeight, GlobalWeight = o.GlobalWeight, Seed = o.Seed,
    };

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) _generator.Dispose();
        base.Dispose(disposing);
    }
}
