using System.Text;

namespace Microsoft.ML.TaskVectors.TaskVectors;

/// <summary>
/// Seeds derived from a user seed, a tensor name and an index. Unlike string.GetHashCode these are
/// the same in every process, so seeded results (DARE masks, random partitions) are reproducible.
/// </summary>
public static class StableHash
{
    /// <summary>64-bit FNV-1a hash of the UTF-8 bytes of <paramref name="text"/>.</summary>
    public static ulong Fnv1a(string text)
    {
        ulong h = 0xcbf29ce484222325UL;
        foreach (var b in Encoding.UTF8.GetBytes(text))
        {
            h ^= b;
            h *= 0x100000001b3UL;
        }
        return h;
    }

    /// <summary>SplitMix64's finaliser: spreads nearby inputs (seeds 0, 1, 2 …) over all 64 bits.</summary>
    public static ulong Mix(ulong x)
    {
        x += 0x9E3779B97F4A7C15UL;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }

    /// <summary>A generator seed for (seed, index, name), for example (DARE seed, task, tensor name).</summary>
    public static ulong Seed(long seed, string name, int index = 0) =>
        Mix(Mix(Mix((ulong)seed) ^ (ulong)(uint)index) ^ Fnv1a(name));
}
