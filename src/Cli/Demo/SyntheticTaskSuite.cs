using Microsoft.ML.TaskVectors.TaskVectors;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Cli.Demo;

/// <summary>The three splits of each synthetic task.</summary>
public enum DemoSplit
{
    /// <summary>Used for pre-training and fine-tuning.</summary>
    Train,
    /// <summary>Used to choose merge hyper-parameters (λ), as the paper's protocol does.</summary>
    Validation,
    /// <summary>Used only for the reported accuracies.</summary>
    Test,
}

/// <summary>One labelled split: inputs [n, D] (float32) and labels [n] (int64), owned by the suite.</summary>
/// <param name="Inputs">The inputs, one row per sample.</param>
/// <param name="Labels">The class of each sample, in [0, C).</param>
public sealed record LabeledSplit(Tensor Inputs, Tensor Labels)
{
    /// <summary>Number of samples.</summary>
    public long Count => Labels.shape[0];
}

/// <summary>
/// A procedural multi-task classification suite standing in for the paper's eight image datasets.
/// Every task is a C-class problem over the same D-dimensional inputs; task t hides its classes in
/// its own random k-dimensional subspace of the input space (its own rotation), and the remaining
/// directions carry only Gaussian noise. A shared encoder therefore has to attend to different
/// directions for different tasks, which is what makes task vectors differ and merges interfere.
/// </summary>
/// <remarks>
/// Everything is generated from the seed with TorchSharp CPU generators, so the same seed gives
/// bit-identical tensors. Each task draws from its own generator (derived from the seed and the task
/// index), so task t's data do not depend on how many tasks the suite has.
/// </remarks>
public sealed class SyntheticTaskSuite : IDisposable
{
    private readonly LabeledSplit[,] _splits;

    private SyntheticTaskSuite(SyntheticTaskSuiteOptions options, LabeledSplit[,] splits)
    {
        Options = options;
        _splits = splits;
        TaskNames = Enumerable.Range(0, options.Tasks).Select(t => $"task{t}").ToArray();
    }

    /// <summary>The options the suite was generated from.</summary>
    public SyntheticTaskSuiteOptions Options { get; }

    /// <summary>Number of tasks N.</summary>
    public int TaskCount => Options.Tasks;

    /// <summary>Classes per task C.</summary>
    public int ClassCount => Options.Classes;

    /// <summary>Input dimension D.</summary>
    public int InputDim => Options.InputDim;

    /// <summary>The task names, <c>task0</c> … <c>task{N−1}</c>.</summary>
    public IReadOnlyList<string> TaskNames { get; }

    /// <summary>Generates the suite.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is outside its range; the message says which.</exception>
    public static SyntheticTaskSuite Create(SyntheticTaskSuiteOptions? options = null)
    {
        var o = options ?? new SyntheticTaskSuiteOptions();
        o.Validate();
        var splits = new LabeledSplit[o.Tasks, 3];
        try
        {
            for (int t = 0; t < o.Tasks; t++) GenerateTask(o, t, splits);
        }
        catch
        {
            foreach (var s in splits) { s?.Inputs.Dispose(); s?.Labels.Dispose(); }
            throw;
        }
        return new SyntheticTaskSuite(o, splits);
    }

    private static void GenerateTask(SyntheticTaskSuiteOptions o, int task, LabeledSplit[,] splits)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(DemoSeed.Derive(o.Seed, DemoSeed.Data, task));
        // A random orthonormal basis; its first k columns are the task's signal subspace.
        var (q, _) = linalg.qr(randn(new long[] { o.InputDim, o.InputDim }, generator: g));
        var subspace = q.narrow(1, 0, o.SignalDim);
        var prototypes = randn(new long[] { o.Classes, o.SignalDim }, generator: g).mul_(o.Separation);
        int[] perClass = [o.TrainPerClass, o.ValidationPerClass, o.TestPerClass];
        for (int s = 0; s < 3; s++)
        {
            long n = (long)perClass[s] * o.Classes;
            var labels = arange(o.Classes, ScalarType.Int64).repeat_interleave(perClass[s]);
            labels = labels.index_select(0, randperm(n, generator: g));
            var inputs = prototypes.index_select(0, labels).matmul(subspace.t())
                .add_(randn(new long[] { n, o.InputDim }, generator: g).mul_(o.Noise));
            splits[task, s] = new LabeledSplit(inputs.contiguous().DetachFromDisposeScope(), labels.contiguous().DetachFromDisposeScope());
        }
    }

    /// <summary>One split of one task. The tensors belong to the suite: do not dispose them.</summary>
    public LabeledSplit Get(int task, DemoSplit split)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(task);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(task, TaskCount);
        return _splits[task, (int)split];
    }

    /// <summary>Frees every tensor.</summary>
    public void Dispose()
    {
        foreach (var s in _splits)
        {
            s.Inputs.Dispose();
            s.Labels.Dispose();
        }
    }
}

/// <summary>Shape and difficulty of a <see cref="SyntheticTaskSuite"/>.</summary>
public sealed class SyntheticTaskSuiteOptions
{
    /// <summary>Number of tasks N, 1 … 64. Default 4.</summary>
    public int Tasks { get; set; } = 4;

    /// <summary>Classes per task C, at least 2. Default 5.</summary>
    public int Classes { get; set; } = 5;

    /// <summary>Input dimension D. Default 32.</summary>
    public int InputDim { get; set; } = 32;

    /// <summary>Dimension k of each task's signal subspace, 1 … D. Default 8.</summary>
    public int SignalDim { get; set; } = 8;

    /// <summary>Standard deviation of the class prototypes within the signal subspace. Default 1.</summary>
    public double Separation { get; set; } = 1.0;

    /// <summary>Standard deviation of the isotropic input noise. Default 0.6.</summary>
    public double Noise { get; set; } = 0.6;

    /// <summary>Training samples per class. Default 200.</summary>
    public int TrainPerClass { get; set; } = 200;

    /// <summary>Validation samples per class (λ selection). Default 100.</summary>
    public int ValidationPerClass { get; set; } = 100;

    /// <summary>Test samples per class. Default 200.</summary>
    public int TestPerClass { get; set; } = 200;

    /// <summary>Seed of everything the suite draws.</summary>
    public long Seed { get; set; }

    internal void Validate()
    {
        static void Require(bool ok, string name, object value, string range)
        {
            if (!ok) throw new ArgumentOutOfRangeException(name, value, $"{name} must be {range}; got {value}.");
        }
        Require(Tasks is >= 1 and <= 64, nameof(Tasks), Tasks, "in 1 … 64");
        Require(Classes >= 2, nameof(Classes), Classes, "at least 2");
        Require(InputDim >= 1, nameof(InputDim), InputDim, "at least 1");
        Require(SignalDim >= 1 && SignalDim <= InputDim, nameof(SignalDim), SignalDim, $"in 1 … {InputDim} (the input dimension)");
        Require(double.IsFinite(Separation) && Separation > 0, nameof(Separation), Separation, "finite and > 0");
        Require(double.IsFinite(Noise) && Noise >= 0, nameof(Noise), Noise, "finite and ≥ 0");
        Require(TrainPerClass >= 1, nameof(TrainPerClass), TrainPerClass, "at least 1");
        Require(ValidationPerClass >= 1, nameof(ValidationPerClass), ValidationPerClass, "at least 1");
        Require(TestPerClass >= 1, nameof(TestPerClass), TestPerClass, "at least 1");
    }
}

/// <summary>Independent seeds for each random stream of the demo, derived from one user seed with <see cref="StableHash"/>.</summary>
internal static class DemoSeed
{
    // Stream names: changing one stream (say, more fine-tuning steps) leaves the others as they were.
    public const string Data = "demo/data", Heads = "demo/heads", Init = "demo/init", Pretrain = "demo/pretrain", FineTune = "demo/finetune";

    /// <summary>The generator seed of (seed, stream, index), the same in every process.</summary>
    public static ulong Derive(long seed, string stream, int index = 0) => StableHash.Seed(seed, stream, index);
}
