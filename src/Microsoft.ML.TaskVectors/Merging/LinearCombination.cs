using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// The byte-level merge of fixed linear combinations (averaging, task arithmetic, negation; see
/// <see cref="MergeMethod.LinearTaskWeights"/>): each merged tensor is c0·θ0 + Σt wt·θt, or
/// θ0 + Σt wt·τt for stored task vectors, accumulated in one vectorised pass over the inputs.
/// </summary>
internal static unsafe class LinearCombination
{
    /// <summary>The combination with task weights <paramref name="weights"/>; <paramref name="differences"/>: the sources are θt, not τt.</summary>
    /// <remarks>A chunk is merged on the calling thread.</remarks>
    public static MergeInputFiles.ChunkMerge For(double[] weights, bool differences)
    {
        // θ0 + Σ wt·(θt − θ0) = (1 − Σ wt)·θ0 + Σ wt·θt; stored τ files add to θ0 as they are.
        float baseWeight = (float)(differences ? 1 - weights.Sum() : 1);
        var taskWeights = weights.Select(w => (float)w).ToArray();
        return (_, tasks, _, theta0, merged, _) =>
        {
            var acc = new Span<float>(merged, checked((int)tasks.Length));
            acc.Clear();
            AddScaled(acc, theta0, baseWeight);
            for (int t = 0; t < taskWeights.Length; t++)
            {
                AddScaled(acc, tasks.Pointer(t), taskWeights[t]);
            }
        };
    }

    /// <summary>acc += weight · x[0 … acc.Length).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AddScaled(Span<float> acc, float* x, float weight)
    {
        if (weight == 0)
        {
            return;
        }

        var source = new ReadOnlySpan<float>(x, acc.Length);
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var w = new Vector<float>(weight);
            var accV = MemoryMarshal.Cast<float, Vector<float>>(acc);
            var xV = MemoryMarshal.Cast<float, Vector<float>>(source);
            for (int v = 0; v < accV.Length; v++)
            {
                accV[v] += w * xV[v];
            }

            i = accV.Length * Vector<float>.Count;
        }

        for (; i < acc.Length; i++)
        {
            acc[i] += weight * source[i];
        }
    }
}
