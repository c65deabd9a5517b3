using System.Text.RegularExpressions;
using Microsoft.ML.TaskVectors.Checkpoints;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.TaskVectors;

/// <summary>How task vectors are split into blocks, each with its own composition coefficient.</summary>
public enum BlockGranularity
{
    /// <summary>One block per parameter tensor (the aTLAS convention; the default).</summary>
    PerTensor,
    /// <summary>One block per transformer layer; tensors outside the layers are a block each.</summary>
    PerLayer,
    /// <summary>The whole task vector is one block (task arithmetic with one coefficient per task).</summary>
    PerTaskVector,
    /// <summary>Each tensor's entries are assigned at random to K blocks (aTLAS×K).</summary>
    RandomPartitions,
}

/// <summary>One block: a set of tensors, or one random part of one tensor.</summary>
/// <param name="Index">Position of the block (0 … M−1).</param>
/// <param name="Name">A readable name: the tensor, the layer prefix, or "tensor#part".</param>
/// <param name="TensorNames">The tensors the block covers.</param>
/// <param name="Part">For random partitions, which part of the tensor; otherwise null (all of it).</param>
public sealed record Block(int Index, string Name, IReadOnlyList<string> TensorNames, int? Part);

/// <summary>
/// The blocks j of θ = θ0 + Σt Σj z[t,j]·τt,j. Every entry of every tensor belongs to exactly one block.
/// </summary>
public sealed partial class BlockPartition
{
    // Source-generated: a Compiled regex costs its compilation at every start of a short-lived process.
    [GeneratedRegex(@"^(.*?\.(?:layers|resblocks|layer|blocks|h)\.\d+)\.", RegexOptions.CultureInvariant)]
    private static partial Regex LayerPattern();
    private readonly Dictionary<string, int[]> _blocksOfTensor;

    private BlockPartition(BlockGranularity granularity, int partsPerTensor, long seed, IReadOnlyList<Block> blocks)
    {
        Granularity = granularity;
        PartsPerTensor = partsPerTensor;
        Seed = seed;
        Blocks = blocks;
        _blocksOfTensor = blocks
            .SelectMany(b => b.TensorNames.Select(t => (t, b.Index)))
            .GroupBy(x => x.t, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.Select(x => x.Index).ToArray(), StringComparer.Ordinal);
    }

    /// <summary>The granularity used.</summary>
    public BlockGranularity Granularity { get; }

    /// <summary>K for <see cref="BlockGranularity.RandomPartitions"/>; 1 otherwise.</summary>
    public int PartsPerTensor { get; }

    /// <summary>Seed of the random assignment (random partitions only).</summary>
    public long Seed { get; }

    /// <summary>The blocks, in order.</summary>
    public IReadOnlyList<Block> Blocks { get; }

    /// <summary>Number of blocks M.</summary>
    public int Count => Blocks.Count;

    /// <summary>Splits the given tensors (taken in order) into blocks.</summary>
    /// <param name="tensors">The task vectors' tensors.</param>
    /// <param name="granularity">How to split.</param>
    /// <param name="partsPerTensor">K, for random partitions (at least 1).</param>
    /// <param name="seed">Seed of the random assignment.</param>
    public static BlockPartition Create(IReadOnlyList<TensorInfo> tensors, BlockGranularity granularity = BlockGranularity.PerTensor, int partsPerTensor = 1, long seed = 0)
    {
        if (tensors.Count == 0) throw new ArgumentException("At least one tensor is needed to form blocks.", nameof(tensors));
        if (granularity == BlockGranularity.RandomPartitions ? partsPerTensor < 1 : partsPerTensor != 1)
            throw new ArgumentOutOfRangeException(nameof(partsPerTensor), partsPerTensor,
                "partsPerTensor must be at least 1 for random partitions and exactly 1 for the other granularities.");
        var blocks = new List<Block>();
        switch (granularity)
        {
            case BlockGranularity.PerTensor:
                foreach (var t in tensors) blocks.Add(new Block(blocks.Count, t.Name, [t.Name], null));
                break;
            case BlockGranularity.PerTaskVector:
                blocks.Add(new Block(0, "all", tensors.Select(t => t.Name).ToArray(), null));
                break;
            case BlockGranularity.PerLayer:
                foreach (var group in tensors.GroupBy(t => LayerKey(t.Name)))
                    blocks.Add(new Block(blocks.Count, group.Key, group.Select(t => t.Name).ToArray(), null));
                break;
            case BlockGranularity.RandomPartitions:
                foreach (var t in tensors)
                    for (int k = 0; k < partsPerTensor; k++)
                        blocks.Add(new Block(blocks.Count, $"{t.Name}#{k}", [t.Name], k));
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(granularity), granularity, "Unknown block granularity.");
        }
        return new BlockPartition(granularity, partsPerTensor, seed, blocks);
    }

    private static string LayerKey(string tensorName)
    {
        var m = LayerPattern().Match(tensorName);
        return m.Success ? m.Groups[1].Value : tensorName;
    }

    /// <summary>The indices of the blocks covering the tensor (K of them for random partitions, else one).</summary>
    public IReadOnlyList<int> BlocksOf(string tensorName) =>
        _blocksOfTensor.TryGetValue(tensorName, out var b)
            ? b
            : throw new KeyNotFoundException($"Tensor '{tensorName}' belongs to no block of this partition.");

    /// <summary>
    /// For random partitions: an int64 tensor of <paramref name="shape"/> giving each entry's part
    /// (0 … K−1), the same on every call for the same seed and tensor name. Null for other granularities.
    /// </summary>
    public Tensor? PartIndex(string tensorName, long[] shape)
    {
        if (Granularity != BlockGranularity.RandomPartitions) return null;
        BlocksOf(tensorName);
        using var generator = new TorchSharp.torch.Generator(StableHash.Seed(Seed, tensorName));
        return randint(0, PartsPerTensor, shape, dtype: ScalarType.Int64, generator: generator);
    }
}
