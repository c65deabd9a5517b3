using System.Text;

namespace Microsoft.ML.TaskVectors.TaskVectors;

/// <summary>
/// FNV-1a over UTF-8, for seeds derived from tensor names: unlike string.GetHashCode it is the same
/// in every process, so seeded results are reproducible across runs.
/// </summary>
public static class StableHash
{
    /// <summary>64-bit FNV-1a hash of <paramref name="text"/>.</summary>
    public static ulong Fnv1a(string text)
    {
        ulong h = 14695981039346656037UL;
        foreach (var b in Encoding.UTF8.GetBytes(text))
        {
            h ^= b;
            h *= 1099511628211UL;
        }
        return h;
    }

    /// <summary>A non-negative seed combining a user seed with parts such as a task index and a tensor name.</summary>
    public static long Seed(long seed, params object[] parts)
    {
        ulong h = Fnv1a(seed.ToString(System.Globalization.CultureInfo.InvariantCulture));
        foreach (var p in parts)
            h = (h ^ Fnv1a(Convert.ToString(p, System.Globalization.CultureInfo.InvariantCulture) ?? "")) * 1099511628211UL;
        return (long)(h & long.MaxValue);
    }
}
