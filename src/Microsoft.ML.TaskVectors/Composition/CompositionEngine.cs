using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Runtime;
using Microsoft.ML.TaskVectors.TaskVectors;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Composition;

/// <summary>
/// Runs the CLIP vision tower with weights θ = θ0 + Σt Σj z[t,j]·τt,j composed from a task-vector pool
/// (SPEC section 4). Coefficients are task-level, [N, M], one weight set for the whole batch, or per
/// sample, [B, N, M], where each sample gets its own weights without the engine ever holding B copies
/// of the model: linear layers form per-sample weights a cache-sized tile at a time (or apply every τ
/// as a branch when that is cheaper), and backward forms the tiles again instead of saving them.
/// Gradients reach only the coefficients; θ0 and τ are frozen.
/// </summary>
public sealed class CompositionEngine : IDisposable
{
    private readonly Dictionary<string, Tensor> _fixed;

    private CompositionEngine(ClipVisionConfig config, int projectionDim, IReadOnlyList<string> taskNames, BlockPartition blocks,
        Dictionary<string, Tensor> @fixed, Dictionary<string, ComposedTensor> composed, CompositionEngineOptions options)
    {
        Config = config;
        ProjectionDim = projectionDim;
        TaskNames = taskNames;
        Blocks = blocks;
        _fixed = @fixed;
        Fixed = new PlainClipWeights(@fixed);
        Composed = composed;
        Options = options;
    }

    /// <summary>The vision tower's shape.</summary>
    public ClipVisionConfig Config { get; }

    /// <summary>Width of the image embedding.</summary>
    public int ProjectionDim { get; }

    /// <summary>The tasks, in coefficient order.</summary>
    public IReadOnlyList<string> TaskNames { get; }

    /// <summary>Number of task vectors N.</summary>
    public int TaskCount => TaskNames.Count;

    /// <summary>The blocks j of the coefficients.</summary>
    public BlockPartition Blocks { get; }

    /// <summary>Number of blocks M.</summary>
    public int BlockCount => Blocks.Count;

    /// <summary>The options the engine was built with.</summary>
    public CompositionEngineOptions Options { get; }

    /// <summary>Where θ0, τ and the computation live.</summary>
    public Device Device => Fixed.Get(ClipVisionTransformer.ProjectionName).device;

    /// <summary>
    /// The task vectors as the engine holds them (float32, on its device; each task summed over its blocks), as a
    /// read-only set for data-free methods that work on τ directly (WUDI).
    /// </summary>
    public ITaskVectorSet TaskVectors => new EngineTaskVectorSet(this);

    /// <summary>Whether per-sample layers run in <see cref="PerSampleKernels"/> (asked for, supported by the CPU, on the CPU).</summary>
    internal bool UsesFusedKernels => Options.FusedCpuKernels && PerSampleKernels.IsSupported && Device.type == TorchSharp.DeviceType.CPU;

    /// <summary>Names of the tensors that are composed (the rest are θ0's).</summary>
    public IReadOnlyCollection<string> ComposedTensorNames => Composed.Keys;

    internal PlainClipWeights Fixed { get; }

    internal Dictionary<string, ComposedTensor> Composed { get; }

    /// <summary>Builds the engine over a CLIP model's vision tower (θ0) and task vectors in Hugging Face names.</summary>
    /// <param name="model">The pre-trained model; its weights are copied to the engine's device.</param>
    /// <param name="taskVectors">The N task vectors; tensors outside the vision tower are ignored.</param>
    /// <param name="blocks">The coefficient blocks; the pool's own (or one per tensor) when null.</param>
    /// <param name="options">Device, strategy and tile size.</param>
    /// <param name="progress">Fraction of tensors loaded.</param>
    /// <param name="cancellationToken">Stops loading.</param>
    public static CompositionEngine Create(ClipModel model, ITaskVectorSet taskVectors, BlockPartition? blocks = null,
        CompositionEngineOptions? options = null, IProgress<double>? progress = null, CancellationToken cancellationToken = default) =>
        Create(model.Config.Vision, model.Config.ProjectionDim, model.Vision.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter),
            taskVectors, blocks, options, progress, cancellationToken);

    /// <summary>Builds the engine from θ0's vision tensors (Hugging Face names) and task vectors.</summary>
    /// <exception cref="ArgumentException">A task-vector tensor does not fit θ0, or the tower is incomplete; every problem is listed.</exception>
    public static CompositionEngine Create(ClipVisionConfig config, int projectionDim, IReadOnlyDictionary<string, Tensor> baseWeights,
        ITaskVectorSet taskVectors, BlockPartition? blocks = null, CompositionEngineOptions? options = null,
        IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        options ??= new CompositionEngineOptions();
        var device = options.Device ?? CPU;
        NativeHeap.ConfigureForTensorWorkloads();
        var expected = ClipVisionTransformer.ParameterShapes(config, projectionDim).ToArray();
        var problems = new List<string>();
        foreach (var (name, shape) in expected)
        {
            if (!baseWeights.TryGetValue(name, out var w)) problems.Add($"θ0 has no '{name}'");
            else if (!w.shape.AsSpan().SequenceEqual(shape)) problems.Add($"θ0's '{name}' is [{string.Join(", ", w.shape)}], the configuration needs [{string.Join(", ", shape)}]");
        }
        var vision = expected.Select(e => e.Name).ToHashSet(StringComparer.Ordinal);
        var composedNames = taskVectors.TensorNames.Where(vision.Contains).ToArray();
        foreach (var name in composedNames)
            if (baseWeights.TryGetValue(name, out var w) && !w.shape.AsSpan().SequenceEqual(taskVectors.GetShape(name)))
                problems.Add($"task vectors' '{name}' is [{string.Join(", ", taskVectors.GetShape(name))}] but θ0's is [{string.Join(", ", w.shape)}]");
        if (composedNames.Length == 0)
            problems.Add("the task vectors hold no tensor of the vision tower (are they in Hugging Face names? open the checkpoints with ClipCheckpoint)");
        if (problems.Count > 0)
            throw new ArgumentException("Cannot compose these task vectors onto this model:\n  " + string.Join("\n  ", problems), nameof(taskVectors));

        blocks ??= taskVectors is TaskVectorPool pool
            ? pool.Blocks
            : BlockPartition.Create(taskVectors.TensorNames.Select(n => new TensorInfo(n, TensorDType.F32, taskVectors.GetShape(n))).ToArray());
        int n = taskVectors.Count, m = blocks.Count;

        var @fixed = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var composed = new Dictionary<string, ComposedTensor>(StringComparer.Ordinal);
        try
        {
            int done = 0;
            foreach (var (name, _) in expected)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var theta0 = baseWeights[name].detach().to(float32).to(device).clone();
                if (!composedNames.Contains(name))
                {
                    @fixed[name] = theta0.MoveToOuterDisposeScope();
                    continue;
                }
                var parts = blocks.BlocksOf(name);
                var partIndex = blocks.PartIndex(name, theta0.shape);
                var rows = new List<Tensor> { theta0.flatten() };
                var columns = new List<long>();
                for (int t = 0; t < n; t++)
                {
                    var tau = taskVectors.Get(t, name).to(device).flatten();
                    for (int k = 0; k < parts.Count; k++)
                    {
                        rows.Add(partIndex is null ? tau : tau * partIndex.to(device).flatten().eq(k));
                        columns.Add((long)t * m + parts[k]);
                    }
                }
                var rowsOfTensor = stack(rows);
                // θ0 is the stack's first row; the plain weights view it rather than keep a second copy.
                @fixed[name] = rowsOfTensor[0].view(theta0.shape).MoveToOuterDisposeScope();
                composed[name] = new ComposedTensor(name, theta0.shape, rowsOfTensor.MoveToOuterDisposeScope(),
                    tensor(columns.ToArray(), device: device).MoveToOuterDisposeScope());
                progress?.Report((double)++done / composedNames.Length);
            }
        }
        catch
        {
            foreach (var t in @fixed.Values) t.Dispose();
            foreach (var c in composed.Values) c.Dispose();
            throw;
        }
        return new CompositionEngine(config, projectionDim, taskVectors.TaskNames.ToArray(), blocks, @fixed, composed, options);
    }

    /// <summary>The vision tower with θ0 (no task vectors).</summary>
    public ClipVisionOutput ForwardBase(Tensor pixels) => ClipVisionTransformer.Encode(Config, pixels.to(Device), Fixed);

    /// <summary>
    /// The vision tower with composed weights: <paramref name="coefficients"/> [N, M] for one weight set
    /// for the batch, or [B, N, M] for one per sample. Differentiable with respect to the coefficients.
    /// </summary>
    /// <param name="pixels">Preprocessed images [B, 3, H, W].</param>
    /// <param name="coefficients">[N, M] or [B, N, M].</param>
    /// <param name="strategy">Overrides <see cref="CompositionEngineOptions.Strategy"/> for this call.</param>
    /// <exception cref="ArgumentException">The coefficients' shape does not match N, M or the batch.</exception>
    public ClipVisionOutput Forward(Tensor pixels, Tensor coefficients, PerSampleStrategy? strategy = null)
        => ClipVisionTransformer.Encode(Config, pixels.to(Device), WeightsFor(coefficients, pixels.shape[0], strategy));

    /// <summary>
    /// The weight source for <paramref name="coefficients"/> ([N, M] or [B, N, M]), for callers that run
    /// their own forward; <paramref name="batch"/> checks a per-sample batch size when given.
    /// </summary>
    public ClipWeights WeightsFor(Tensor coefficients, long? batch = null, PerSampleStrategy? strategy = null)
    {
        bool perSample = coefficients.dim() == 3;
        var shape = coefficients.shape;
        if (!(coefficients.dim() == 2 && shape[0] == TaskCount && shape[1] == BlockCount
              || perSample && shape[1] == TaskCount && shape[2] == BlockCount && (batch is null || shape[0] == batch)))
            throw new ArgumentException(
                $"coefficients must be [N={TaskCount}, M={BlockCount}] (task-level) or [B{(batch is null ? "" : "=" + batch)}, {TaskCount}, {BlockCount}] (per sample); got [{string.Join(", ", shape)}].",
                nameof(coefficients));
        if (!coefficients.is_floating_point())
            throw new ArgumentException($"coefficients must be floating point; got {coefficients.dtype}.", nameof(coefficients));
        var flat = coefficients.to(float32).to(Device).reshape(perSample ? shape[0] : 1, (long)TaskCount * BlockCount);
        return new ComposedClipWeights(this, flat, perSample, strategy ?? Options.Strategy);
    }

    /// <summary>
    /// The explicit weights θ0 + Σ z·τ for task-level coefficients [N, M], by Hugging Face name
    /// (new tensors, detached, owned by the caller): a merged model to save or export.
    /// </summary>
    public Dictionary<string, Tensor> Compose(Tensor coefficients)
    {
        if (coefficients.dim() != 2) throw new ArgumentException("Compose takes task-level coefficients [N, M].", nameof(coefficients));
        using var noGrad = no_grad();
        var weights = WeightsFor(coefficients);
        return _fixed.Keys.ToDictionary(name => name, name => weights.Get(name).detach().clone().DetachFromDisposeScope(), StringComparer.Ordinal);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var t in _fixed.Values) t.Dispose();
        foreach (var c in Composed.Values) c.Dispose();
    }
}
