using Microsoft.ML.TaskVectors.TaskVectors;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// DARE's drop-and-rescale as an <see cref="ITaskVectorSet"/> decorator: each entry of a task tensor
/// is dropped with probability p and survivors are rescaled by 1/(1−p). The mask of a
/// (task, tensor) pair comes from a CPU generator seeded from (seed, task index, FNV-1a hash of the
/// tensor name), so reading the same pair again returns identical values, in any order and in any
/// process.
/// </summary>
internal sealed class DropAndRescaleTaskVectorSet : ITaskVectorSet
{
    private readonly ITaskVectorSet _inner;

    public DropAndRescaleTaskVectorSet(ITaskVectorSet inner, double p, long seed)
    {
        _inner = inner ?? throw new ArgumentNullException(nameof(inner));
        P = p;
        Seed = seed;
    }

    /// <summary>The wrapped (undropped) task vectors.</summary>
    public ITaskVectorSet Inner => _inner;

    public double P { get; }

    public long Seed { get; }

    public int Count => _inner.Count;

    public IReadOnlyList<string> TaskNames => _inner.TaskNames;

    public IReadOnlyList<string> TensorNames => _inner.TensorNames;

    public long[] GetShape(string tensorName) => _inner.GetShape(tensorName);

    public torch.Tensor Get(int task, string tensorName)
    {
        using var scope = torch.NewDisposeScope();
        var tau = _inner.Get(task, tensorName).to(torch.ScalarType.Float32);
        if (P == 0)
        {
            return tau.MoveToOuterDisposeScope();
        }

        using var generator = new torch.Generator(StableHash.Seed(Seed, tensorName, task), torch.CPU);
        var uniform = torch.rand(tau.shape, torch.ScalarType.Float32, torch.CPU, generator: generator);
        var result = tau.mul(1.0 / (1.0 - P)).masked_fill(uniform.lt(P), 0.0f);
        return result.MoveToOuterDisposeScope();
    }
}
