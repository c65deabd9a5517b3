using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Microsoft.ML.TaskVectors.Trainers.Variational;

/// <summary>
/// The amortised inference network of SPEC section 2.3: the sample's pre-trained feature vector x [B, d] through a
/// 3-layer MLP (Linear → ReLU → Linear → ReLU → Linear) to three heads, μ(x), log σ²(x) (clamped) and inclusion
/// logits, each [B, N, M]. The last Linear is split into one Linear per head so a variant computes only the heads it
/// needs; all three always exist, so one module (and one checkpoint layout) serves every variant.
/// </summary>
/// <remarks>
/// <para>Parameter count for hidden width h, K = N·M coefficients: P(h) = (d + 1)·h + (h + 1)·h + 3·(h + 1)·K
/// = h² + (d + 2 + 3K)·h + 3K. With d = 512, N = 8, M = 158 the default budget of 750,000 gives h = 167 and
/// P = 750,783, the paper's ≈0.75M.</para>
/// <para>Initialisation is PyTorch's Linear default (weights and biases uniform in ±1/√fan_in) drawn from a private
/// generator seeded by <see cref="InferenceNetworkOptions.Seed"/>, so the global random state is left alone. Then the
/// μ head's weights are zeroed and its bias set to <see cref="InferenceNetworkOptions.InitialMean"/>, so μ starts at
/// the same value for every input; the other heads keep random weights and get their biases from the options.</para>
/// </remarks>
public sealed class InferenceNetwork : nn.Module<Tensor, InferenceOutput>
{
    [ComponentName(Name = "fc1")] private Linear _fc1;
    [ComponentName(Name = "fc2")] private Linear _fc2;
    [ComponentName(Name = "mean")] private Linear _mean;
    [ComponentName(Name = "log_variance")] private Linear _logVariance;
    [ComponentName(Name = "inclusion")] private Linear _inclusion;
    private readonly double _minLogVariance, _maxLogVariance;
    private readonly InferenceHeads _defaultHeads;

    /// <summary>Creates the network with seeded initial weights.</summary>
    /// <param name="featureDim">d, the width of the pre-trained feature vector.</param>
    /// <param name="tasks">N, the number of task vectors.</param>
    /// <param name="blocks">M, the number of blocks per task vector.</param>
    /// <param name="options">Width, initial values, clamps and seed (defaults when null).</param>
    /// <exception cref="ArgumentException">A size is not positive or an option is out of range.</exception>
    public InferenceNetwork(int featureDim, int tasks, int blocks, InferenceNetworkOptions? options = null) : base(nameof(InferenceNetwork))
    {
        options ??= new InferenceNetworkOptions();
        options.Validate();
        CheckPositive(featureDim, nameof(featureDim));
        CheckPositive(tasks, nameof(tasks));
        CheckPositive(blocks, nameof(blocks));
        FeatureDim = featureDim;
        Tasks = tasks;
        Blocks = blocks;
        HiddenWidth = options.HiddenWidth ?? HiddenWidthFor(featureDim, tasks, blocks, options.TargetParameterCount);
        _minLogVariance = options.MinLogVariance;
        _maxLogVariance = options.MaxLogVariance;
        _defaultHeads = options.Heads;

        long k = (long)tasks * blocks;
        using var generator = new Generator((ulong)options.Seed);
        _fc1 = SeededLinear(featureDim, HiddenWidth, generator);
        _fc2 = SeededLinear(HiddenWidth, HiddenWidth, generator);
        _mean = SeededLinear(HiddenWidth, k, generator);
        _logVariance = SeededLinear(HiddenWidth, k, generator);
        _inclusion = SeededLinear(HiddenWidth, k, generator);
        using (no_grad())
        {
            _mean.weight.zero_();
            _mean.bias!.fill_(options.InitialMean);
            _logVariance.bias!.fill_(options.InitialLogVariance);
            double p = options.InitialInclusionProbability;
            _inclusion.bias!.fill_(Math.Log(p / (1 - p)));
        }
        RegisterComponents();
    }

    /// <summary>d, the input width.</summary>
    public int FeatureDim { get; }

    /// <summary>N, the number of task vectors.</summary>
    public int Tasks { get; }

    /// <summary>M, the number of blocks per task vector.</summary>
    public int Blocks { get; }

    /// <summary>h, the width of both hidden layers.</summary>
    public int HiddenWidth { get; }

    /// <summary>The number of trainable parameters: <see cref="ParameterCount"/> of this network's sizes.</summary>
    public long TrainableParameterCount => ParameterCount(FeatureDim, HiddenWidth, Tasks, Blocks);

    /// <summary>P(h) = (d + 1)·h + (h + 1)·h + 3·(h + 1)·N·M: two hidden layers and three heads, with biases.</summary>
    public static long ParameterCount(int featureDim, int hiddenWidth, int tasks, int blocks)
    {
        long d = featureDim, h = hiddenWidth, k = (long)tasks * blocks;
        return (d + 1) * h + (h + 1) * h + 3 * (h + 1) * k;
    }

    /// <summary>
    /// The hidden width h ≥ 1 whose <see cref="ParameterCount"/> is closest to <paramref name="targetParameters"/>: the
    /// positive root of h² + (d + 2 + 3K)·h + 3K = target, rounded to the nearer of its two neighbouring integers.
    /// </summary>
    public static int HiddenWidthFor(int featureDim, int tasks, int blocks, long targetParameters = InferenceNetworkOptions.DefaultTargetParameterCount)
    {
        CheckPositive(featureDim, nameof(featureDim));
        CheckPositive(tasks, nameof(tasks));
        CheckPositive(blocks, nameof(blocks));
        double k = (double)tasks * blocks, b = featureDim + 2 + 3 * k, c = 3 * k - targetParameters;
        double root = (-b + Math.Sqrt(b * b - 4 * c)) / 2;
        long low = Math.Max(1, (long)Math.Floor(root)), high = Math.Max(1, (long)Math.Ceiling(root));
        long best = Math.Abs(ParameterCount(featureDim, (int)high, tasks, blocks) - targetParameters)
            < Math.Abs(ParameterCount(featureDim, (int)low, tasks, blocks) - targetParameters) ? high : low;
        return (int)Math.Min(best, int.MaxValue);
    }

    /// <summary>The heads chosen by <see cref="InferenceNetworkOptions.Heads"/> for features [B, d].</summary>
    public override InferenceOutput forward(Tensor features) => Forward(features, _defaultHeads);

    /// <summary>The requested heads for features [B, d]; the others are null.</summary>
    /// <exception cref="ArgumentException">The features are not a floating-point [B, d] matrix.</exception>
    public InferenceOutput Forward(Tensor features, InferenceHeads heads)
    {
        CheckFeatures(features);
        using var scope = NewDisposeScope();
        var hidden = F.relu(_fc2.forward(F.relu(_fc1.forward(features))));
        long batch = features.shape[0];
        Tensor? Head(InferenceHeads head, Linear layer) =>
            (heads & head) != 0 ? layer.forward(hidden).view(batch, Tasks, Blocks) : null;
        var mean = Head(InferenceHeads.Mean, _mean);
        var logVariance = Head(InferenceHeads.LogVariance, _logVariance)?.clamp(_minLogVariance, _maxLogVariance);
        var logits = Head(InferenceHeads.InclusionLogits, _inclusion);
        return new InferenceOutput(mean?.MoveToOuterDisposeScope(), logVariance?.MoveToOuterDisposeScope(), logits?.MoveToOuterDisposeScope());
    }

    /// <summary>μ(x) [B, N, M] alone: the function <see cref="UncertaintyGate"/> differentiates.</summary>
    public Tensor Mean(Tensor features)
    {
        using var output = Forward(features, InferenceHeads.Mean);
        return output.Mean!.alias();
    }

    private void CheckFeatures(Tensor features)
    {
        ArgumentNullException.ThrowIfNull(features);
        if (features.ndim != 2 || features.shape[1] != FeatureDim || features.shape[0] < 1)
            throw new ArgumentException($"The inference network expects features [B, {FeatureDim}] with B ≥ 1, found [{string.Join(", ", features.shape)}].", nameof(features));
        if (!features.is_floating_point())
            throw new ArgumentException($"The inference network expects floating-point features, found {features.dtype}.", nameof(features));
    }

    private static Linear SeededLinear(long inFeatures, long outFeatures, Generator generator)
    {
        // PyTorch's default bound; drawn here rather than by nn.Linear so the global generator is not consumed.
        double bound = 1 / Math.Sqrt(inFeatures);
        var weight = empty(outFeatures, inFeatures).uniform_(-bound, bound, generator);
        var bias = empty(outFeatures).uniform_(-bound, bound, generator);
        return nn.Linear(nn.Parameter(weight), nn.Parameter(bias));
    }

    private static void CheckPositive(int value, string name)
    {
        if (value < 1) throw new ArgumentException($"{name} must be at least 1, found {value}.", name);
    }
}
