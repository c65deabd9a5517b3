using System.Text;
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

        using var generator = new torch.Generator(MaskSeed(Seed, task, tensorName), torch.CPU);
        var uniform = torch.rand(tau.shape, torch.ScalarType.Float32, torch.CPU, generator: generator);
        var result = tau.mul(1.0 / (1.0 - P)).masked_fill(uniform.lt(P), 0.0f);
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>The generator seed of one (task, tensor) pair: SplitMix64 mixing of (seed, task, FNV-1a(name)).</summary>
    internal static ulong MaskSeed(long seed, int task, string tensorName)
    {
        ulong h = SplitMix64((ulong)seed);
        h = SplitMix64(h ^ (ulong)(uint)task);
        return SplitMix64(h ^ Fnv1a64(tensorName));
    }

    /// <summary>64-bit FNV-1a over the UTF-8 bytes of <paramref name="text"/> (stable across processes and platforms).</summary>
    internal static ulong Fnv1a64(string text)
    {
        ulong hash = 0xcbf29ce484222325UL;
        foreach (byte b in Encoding.UTF8.GetBytes(text))
        {
            hash ^= b;
            hash *= 0x100000001b3UL;
        }

        return hash;
    }

    private static ulong SplitMix64(ulong x)
    {
        x += 0x9E3779B97F4A7C15UL;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }
}
