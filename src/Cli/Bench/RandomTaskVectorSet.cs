using Microsoft.ML.TaskVectors.TaskVectors;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Cli.Bench;

/// <summary>N random task vectors over given shapes, generated on demand from a seed (never stored).</summary>
internal sealed class RandomTaskVectorSet(IReadOnlyDictionary<string, long[]> shapes, int count, long seed, double scale = 0.01) : ITaskVectorSet
{
    public int Count => count;

    public IReadOnlyList<string> TaskNames { get; } = Enumerable.Range(0, count).Select(t => $"task{t}").ToArray();

    public IReadOnlyList<string> TensorNames { get; } = shapes.Keys.Order(StringComparer.Ordinal).ToArray();

    public long[] GetShape(string tensorName) => shapes[tensorName];

    public Tensor Get(int task, string tensorName)
    {
        using var generator = new Generator(StableHash.Seed(seed, tensorName, task));
        return randn(shapes[tensorName], generator: generator).mul_(scale);
    }
}
