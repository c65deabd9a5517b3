using System.Text.Json.Nodes;
using Microsoft.ML.TaskVectors.Composition;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Trainers.Variational;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>
/// What any composition trainer produced, behind one interface: coefficients (and gates) for a batch,
/// and the tensors and options a <see cref="CompositionState"/> stores.
/// </summary>
public abstract class TrainedComposition : IDisposable
{
    /// <summary>The method's name (<see cref="CompositionTrainers.Names"/>).</summary>
    public abstract string Method { get; }

    /// <summary>Whether coefficients differ per sample (and gates may be reported).</summary>
    public abstract bool IsSampleSpecific { get; }

    /// <summary>Coefficients for a batch of pixels: [N, M] or [B, N, M]; gates [B, N, M] for gated methods, else null.</summary>
    /// <exception cref="NotSupportedException">The method merges weights directly (WUDI) and has no coefficients.</exception>
    public abstract (Tensor Coefficients, Tensor? Gates) For(CompositionEngine engine, Tensor pixels);

    /// <summary>The composed vision tower's output for a batch of pixels, with the gates of <see cref="For"/>.</summary>
    public virtual (ClipVisionOutput Output, Tensor? Gates) Encode(CompositionEngine engine, Tensor pixels)
    {
        var (z, gates) = For(engine, pixels);
        return (engine.Forward(pixels, z), gates);
    }

    /// <summary>The learned tensors by name.</summary>
    public abstract IReadOnlyDictionary<string, Tensor> StateTensors();

    /// <summary>What is needed to rebuild the composition from its tensors.</summary>
    public abstract JsonObject Options { get; }

    /// <summary>Rebuilds a trained composition from a saved state, for the engine it was trained with.</summary>
    /// <exception cref="InvalidDataException">The state does not fit the engine or names an unknown method.</exception>
    public static TrainedComposition FromState(CompositionState state, CompositionEngine engine)
    {
        if (state.TaskNames.Count != engine.TaskCount)
            throw new InvalidDataException($"The state was trained on {state.TaskNames.Count} task(s) ({string.Join(", ", state.TaskNames)}), the engine holds {engine.TaskCount}.");
        if (CompositionTrainers.SampleSpecific.TryGetValue(state.Method, out var variant))
        {
            int hidden = state.Options["hidden_width"]?.GetValue<int>() ?? throw new InvalidDataException($"The {state.Method} state has no 'hidden_width' option.");
            var network = new InferenceNetwork(engine.ProjectionDim, engine.TaskCount, engine.BlockCount, new InferenceNetworkOptions { HiddenWidth = hidden });
            var gate = variant == SampleSpecificVariant.Gated ? new UncertaintyGate(engine.ProjectionDim, engine.TaskCount, engine.BlockCount) : null;
            Load(network, state, "network.");
            if (gate is not null) Load(gate, state, "gate.");
            network.to(engine.Device).eval();
            gate?.to(engine.Device).eval();
            return new SampleSpecific(new SampleSpecificComposition(variant, network, gate, [], [], 0), state.Options);
        }
        if (state.Method == CompositionTrainers.WudiName)
        {
            var merged = state.Tensors.Where(kv => kv.Key.StartsWith(Merged.Prefix, StringComparison.Ordinal))
                .ToDictionary(kv => kv.Key[Merged.Prefix.Length..], kv => kv.Value, StringComparer.Ordinal);
            var unknown = merged.Keys.Except(engine.ComposedTensorNames).ToArray();
            if (merged.Count == 0 || unknown.Length > 0)
                throw new InvalidDataException(merged.Count == 0
                    ? $"The wudi state holds no merged task vector ('{Merged.Prefix}*' tensors)."
                    : $"The wudi state's tensors {string.Join(", ", unknown)} are not tensors the engine composes (same model and task vectors?).");
            return new Merged(state.Method, engine, merged, state.Options);
        }
        if (!CompositionTrainers.Names.Contains(state.Method))
            throw new InvalidDataException($"Unknown composition method '{state.Method}' in the state; known: {string.Join(", ", CompositionTrainers.Names)}.");
        var z = state.Tensors.TryGetValue("coefficients", out var c) ? c : throw new InvalidDataException("The state has no 'coefficients' tensor.");
        if (!z.shape.SequenceEqual([engine.TaskCount, engine.BlockCount]))
            throw new InvalidDataException($"The state's coefficients are [{string.Join(", ", z.shape)}], the engine needs [{engine.TaskCount}, {engine.BlockCount}] (same task vectors and blocks?).");
        return new TaskLevel(state.Method, z, state.Options, state.Tensors.GetValueOrDefault("gates"));
    }

    private static void Load(nn.Module module, CompositionState state, string prefix)
    {
        var tensors = state.Tensors.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal)).ToDictionary(kv => kv.Key[prefix.Length..], kv => kv.Value);
        try
        {
            module.load_state_dict(tensors, strict: true);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new InvalidDataException($"The state's '{prefix}*' tensors do not fit the {state.Method} model: {e.Message}", e);
        }
    }

    /// <inheritdoc />
    public abstract void Dispose();

    /// <summary>One coefficient set for every sample; with <paramref name="gates"/> (gated aTLAS) its hard gates [N, M].</summary>
    internal sealed class TaskLevel(string method, Tensor coefficients, JsonObject options, Tensor? gates = null) : TrainedComposition
    {
        private readonly Tensor _z = coefficients.detach().cpu().clone().DetachFromDisposeScope();
        private readonly Tensor? _gates = gates?.detach().cpu().clone().DetachFromDisposeScope();

        public override string Method => method;
        public override bool IsSampleSpecific => false;
        public override JsonObject Options => options;

        public override (Tensor, Tensor?) For(CompositionEngine engine, Tensor pixels) =>
            (_z.to(engine.Device), _gates?.unsqueeze(0).expand(pixels.shape[0], -1, -1));

        public override IReadOnlyDictionary<string, Tensor> StateTensors() => _gates is null
            ? new Dictionary<string, Tensor> { ["coefficients"] = _z }
            : new Dictionary<string, Tensor> { ["coefficients"] = _z, ["gates"] = _gates };

        public override void Dispose()
        {
            _z.Dispose();
            _gates?.Dispose();
        }
    }

    /// <summary>
    /// One merged task vector τm over the composed tensors (WUDI): the model θ0 + τm for every sample, scored with a
    /// plain forward.
    /// </summary>
    internal sealed class Merged : TrainedComposition
    {
        public const string Prefix = "task_vector.";
        private readonly string _method;
        private readonly Dictionary<string, Tensor> _merged;
        private readonly Dictionary<string, Tensor> _all;

        public Merged(string method, CompositionEngine engine, IReadOnlyDictionary<string, Tensor> mergedTaskVector, JsonObject options)
        {
            _method = method;
            Options = options;
            _merged = mergedTaskVector.ToDictionary(kv => kv.Key, kv => kv.Value.detach().to(float32).cpu().clone().DetachFromDisposeScope(), StringComparer.Ordinal);
            // θ0 for every tensor (coefficients 0), plus τm where it is defined.
            using var zero = zeros(engine.TaskCount, engine.BlockCount);
            _all = engine.Compose(zero);
            foreach (var (name, tau) in _merged)
                using (var onDevice = tau.to(engine.Device))
                    _all[name].add_(onDevice.view(_all[name].shape));
        }

        public override string Method => _method;
        public override bool IsSampleSpecific => false;
        public override JsonObject Options { get; }

        public override (Tensor, Tensor?) For(CompositionEngine engine, Tensor pixels) =>
            throw new NotSupportedException($"{_method} merges the weights directly: it has no composition coefficients to report.");

        public override (ClipVisionOutput, Tensor?) Encode(CompositionEngine engine, Tensor pixels) =>
            (ClipVisionTransformer.Encode(engine.Config, pixels.to(engine.Device), new PlainClipWeights(_all)), null);

        public override IReadOnlyDictionary<string, Tensor> StateTensors() =>
            _merged.ToDictionary(kv => Prefix + kv.Key, kv => kv.Value, StringComparer.Ordinal);

        public override void Dispose()
        {
            foreach (var t in _merged.Values) t.Dispose();
            foreach (var t in _all.Values) t.Dispose();
        }
    }

    internal sealed class SampleSpecific(SampleSpecificComposition model, JsonObject options) : TrainedComposition
    {
        public SampleSpecificComposition Model => model;

        public override string Method => SampleSpecificTrainer.NameOf(model.Variant);
        public override bool IsSampleSpecific => true;
        public override JsonObject Options => options;

        public override (Tensor, Tensor?) For(CompositionEngine engine, Tensor pixels)
        {
            using var output = engine.ForwardBase(pixels);
            var (z, gates) = model.Infer(output.ImageEmbeds);
            return (z, model.Gate is null && model.Variant != SampleSpecificVariant.SpikeAndSlab ? null : gates);
        }

        public override IReadOnlyDictionary<string, Tensor> StateTensors() => model.StateTensors();
        public override void Dispose() => model.Dispose();
    }
}
