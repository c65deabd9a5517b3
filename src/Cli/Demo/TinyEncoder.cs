using Microsoft.ML.TaskVectors.Checkpoints;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Cli.Demo;

/// <summary>
/// A small stand-in for an image encoder: Linear(D, H) → GELU → Linear(H, H) → LayerNorm(H).
/// Its parameters are named like a real model's (<c>encoder.layers.0.fc1.weight</c>, …), so its
/// checkpoints, task vectors and merges look like the real thing.
/// </summary>
public sealed class TinyEncoder : nn.Module<Tensor, Tensor>
{
    // Field names are the parameter-name prefixes (RegisterComponents uses them).
#pragma warning disable IDE1006
    private readonly EncoderStack encoder;
#pragma warning restore IDE1006

    /// <summary>Creates the encoder with parameters drawn from <paramref name="seed"/>.</summary>
    /// <param name="inputDim">Input dimension D.</param>
    /// <param name="hiddenDim">Feature dimension H.</param>
    /// <param name="seed">Seed of the initial weights (PyTorch's default uniform ±1/√fan_in; LayerNorm 1 and 0).</param>
    public TinyEncoder(int inputDim, int hiddenDim, long seed) : base(nameof(TinyEncoder))
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(inputDim, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(hiddenDim, 1);
        InputDim = inputDim;
        HiddenDim = hiddenDim;
        encoder = new EncoderStack(inputDim, hiddenDim);
        RegisterComponents();
        Initialize(seed);
    }

    /// <summary>Input dimension D.</summary>
    public int InputDim { get; }

    /// <summary>Feature dimension H.</summary>
    public int HiddenDim { get; }

    /// <summary>Features [n, H] of inputs [n, D].</summary>
    public override Tensor forward(Tensor input) => encoder.forward(input);

    private void Initialize(long seed)
    {
        // Drawn from our own generator rather than torch's global one, so concurrent code cannot perturb it.
        using var g = new Generator(DemoSeed.Derive(seed, DemoSeed.Init));
        using var noGrad = no_grad();
        foreach (var (name, p) in named_parameters())
        {
            using var scope = NewDisposeScope();
            if (name.Contains("layer_norm", StringComparison.Ordinal))
            {
                if (name.EndsWith(".weight", StringComparison.Ordinal)) p.fill_(1.0f);
                else p.zero_();
                continue;
            }
            long fanIn = name.Contains("fc1", StringComparison.Ordinal) ? InputDim : HiddenDim;
            double bound = 1.0 / Math.Sqrt(fanIn);
            p.copy_(rand(p.shape, generator: g).mul_(2 * bound).sub_(bound));
        }
    }

    /// <summary>The parameter names, sorted (ordinal), as stored in checkpoints.</summary>
    public IReadOnlyList<string> ParameterNames =>
        named_parameters().Select(p => p.name).OrderBy(n => n, StringComparer.Ordinal).ToArray();

    /// <summary>A detached copy of every parameter, by name; the caller owns the tensors.</summary>
    public Dictionary<string, Tensor> GetParameters()
    {
        using var noGrad = no_grad();
        return named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone().DetachFromDisposeScope(), StringComparer.Ordinal);
    }

    /// <summary>Overwrites every parameter from <paramref name="parameters"/> (same names and shapes).</summary>
    /// <exception cref="ArgumentException">A parameter is missing or has another shape.</exception>
    public void SetParameters(IReadOnlyDictionary<string, Tensor> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        using var noGrad = no_grad();
        foreach (var (name, p) in named_parameters())
        {
            if (!parameters.TryGetValue(name, out var value))
                throw new ArgumentException($"No value for parameter '{name}'.", nameof(parameters));
            CopyInto(name, p, value);
        }
    }

    /// <summary>Loads every parameter from a checkpoint (a file, or a merged view computed on the fly).</summary>
    /// <exception cref="KeyNotFoundException">The checkpoint lacks a parameter.</exception>
    /// <exception cref="ArgumentException">A stored tensor has another shape.</exception>
    public void Load(Checkpoint checkpoint)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        using var noGrad = no_grad();
        foreach (var (name, p) in named_parameters())
        {
            using var value = checkpoint.ReadFloat32(name);
            CopyInto(name, p, value);
        }
    }

    /// <summary>Writes the parameters to a safetensors file (F32, sorted names) with <paramref name="metadata"/>.</summary>
    public void Save(string path, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var parameters = GetParameters();
        try
        {
            SafetensorsWriter.Save(path, parameters, metadata);
        }
        finally
        {
            foreach (var t in parameters.Values) t.Dispose();
        }
    }

    private static void CopyInto(string name, Parameter p, Tensor value)
    {
        if (!value.shape.AsSpan().SequenceEqual(p.shape))
            throw new ArgumentException($"Parameter '{name}' has shape [{string.Join(", ", p.shape)}] but the value has [{string.Join(", ", value.shape)}].");
        p.copy_(value);
    }

    private sealed class EncoderStack : nn.Module<Tensor, Tensor>
    {
#pragma warning disable IDE1006
        private readonly ModuleList<EncoderLayer> layers;
#pragma warning restore IDE1006

        public EncoderStack(int inputDim, int hiddenDim) : base(nameof(EncoderStack))
        {
            layers = nn.ModuleList(new EncoderLayer(inputDim, hiddenDim));
            RegisterComponents();
        }

        public override Tensor forward(Tensor input)
        {
            var x = input;
            foreach (var layer in layers) x = layer.forward(x);
            return x;
        }
    }

    private sealed class EncoderLayer : nn.Module<Tensor, Tensor>
    {
#pragma warning disable IDE1006
        private readonly Linear fc1;
        private readonly Linear fc2;
        private readonly LayerNorm layer_norm;
#pragma warning restore IDE1006

        public EncoderLayer(int inputDim, int hiddenDim) : base(nameof(EncoderLayer))
        {
            fc1 = nn.Linear(inputDim, hiddenDim);
            fc2 = nn.Linear(hiddenDim, hiddenDim);
            layer_norm = nn.LayerNorm(hiddenDim);
            RegisterComponents();
        }

        public override Tensor forward(Tensor input) =>
            layer_norm.forward(fc2.forward(nn.functional.gelu(fc1.forward(input))));
    }
}

/// <summary>
/// Frozen per-task linear heads, one [C, H] matrix per task with unit-norm rows, drawn from the seed
/// and never trained: the analogue of CLIP's zero-shot heads built from class-name embeddings.
/// </summary>
public sealed class TaskHeads : IDisposable
{
    private readonly Tensor[] _weights;

    private TaskHeads(Tensor[] weights) => _weights = weights;

    /// <summary>Number of heads (tasks).</summary>
    public int Count => _weights.Length;

    /// <summary>Draws one head per task. Task t's head depends only on (seed, t), not on the number of tasks.</summary>
    public static TaskHeads Create(int tasks, int classes, int hiddenDim, long seed)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(tasks, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(classes, 2);
        ArgumentOutOfRangeException.ThrowIfLessThan(hiddenDim, 1);
        var weights = new Tensor[tasks];
        for (int t = 0; t < tasks; t++)
        {
            using var scope = NewDisposeScope();
            using var g = new Generator(DemoSeed.Derive(seed, DemoSeed.Heads, t));
            var w = randn(new long[] { classes, hiddenDim }, generator: g);
            weights[t] = w.div_(w.norm(1, keepdim: true)).DetachFromDisposeScope();
        }
        return new TaskHeads(weights);
    }

    /// <summary>The head of a task, [C, H]. Owned by this object.</summary>
    public Tensor this[int task] => _weights[task];

    /// <summary>Class logits [n, C] of features [n, H] under task <paramref name="task"/>'s head.</summary>
    public Tensor Logits(int task, Tensor features) => features.matmul(_weights[task].t());

    /// <summary>Frees the heads.</summary>
    public void Dispose()
    {
        foreach (var w in _weights) w.Dispose();
    }
}
