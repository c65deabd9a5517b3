using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.ML.TaskVectors.Merging;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.TaskVectors;

/// <summary>
/// Norms, sparsity and pairwise cosine similarity of N task vectors, computed in one streaming pass
/// (one tensor of each task vector in memory at a time, accumulated in float64).
/// </summary>
public sealed unsafe class TaskVectorStatistics
{
    private TaskVectorStatistics(IReadOnlyList<string> taskNames, double[,] gram, long[] zeros, long parameterCount,
        IReadOnlyDictionary<string, double[]> tensorNorms)
    {
        TaskNames = taskNames;
        ParameterCount = parameterCount;
        TensorNorms = tensorNorms;
        int n = taskNames.Count;
        Norms = new double[n];
        Sparsity = new double[n];
        CosineSimilarity = new double[n, n];
        for (int i = 0; i < n; i++)
        {
            Norms[i] = Math.Sqrt(gram[i, i]);
            Sparsity[i] = parameterCount == 0 ? 0 : zeros[i] / (double)parameterCount;
        }
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                CosineSimilarity[i, j] = Norms[i] == 0 || Norms[j] == 0 ? 0 : gram[i, j] / (Norms[i] * Norms[j]);
    }

    /// <summary>The task names, in order.</summary>
    public IReadOnlyList<string> TaskNames { get; }

    /// <summary>Entries per task vector.</summary>
    public long ParameterCount { get; }

    /// <summary>L2 norm of each whole task vector.</summary>
    public double[] Norms { get; }

    /// <summary>Fraction of entries of each task vector whose magnitude is at most the zero tolerance.</summary>
    public double[] Sparsity { get; }

    /// <summary>N×N cosine similarity of the flattened task vectors (0 where a vector is all zero).</summary>
    public double[,] CosineSimilarity { get; }

    /// <summary>Per tensor, the L2 norm of each task vector's copy of it.</summary>
    public IReadOnlyDictionary<string, double[]> TensorNorms { get; }

    /// <summary>Computes the statistics.</summary>
    /// <param name="taskVectors">The task vectors.</param>
    /// <param name="zeroTolerance">Entries with |x| ≤ this count as zero for <see cref="Sparsity"/>.</param>
    /// <param name="progress">Receives the fraction of tensors done.</param>
    /// <param name="cancellationToken">Stops between tensors.</param>
    public static TaskVectorStatistics Compute(ITaskVectorSet taskVectors, double zeroTolerance = 0, IProgress<double>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(zeroTolerance);
        int n = taskVectors.Count;
        var gram = new double[n, n];
        var zeros = new long[n];
        long count = 0;
        var tensorNorms = new Dictionary<string, double[]>(StringComparer.Ordinal);
        int done = 0;
        foreach (var name in taskVectors.TensorNames)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            // θt and θ0 of a pool over one base (the base read once), or τt: τt = θt − θ0 is formed in float32, as Get forms it.
            var batch = TaskTensors.Read(taskVectors, name);
            long length = batch.Length;
            var (g, z) = Products(batch, zeroTolerance);
            var norms = new double[n];
            for (int i = 0; i < n; i++)
            {
                zeros[i] += z[i];
                norms[i] = Math.Sqrt(g[i * n + i]);
                for (int j = 0; j < n; j++) gram[i, j] += g[Math.Min(i, j) * n + Math.Max(i, j)];
            }
            tensorNorms[name] = norms;
            count += length;
            progress?.Report(++done / (double)taskVectors.TensorNames.Count);
        }
        return new TaskVectorStatistics(taskVectors.TaskNames, gram, zeros, count, tensorNorms);
    }

    /// <summary>Entries converted to float64 at a time: the N blocks stay in the core's cache for the N(N+1)/2 dot products.</summary>
    private const int Block = 2048;

    /// <summary>
    /// The upper triangle of the N×N Gram matrix (float64 sums of float64 products) of the batch's τt, and how
    /// many entries of each are at most <paramref name="zeroTolerance"/> in magnitude, on every core. Streams
    /// the batch once, with no copies beyond a small block per core.
    /// </summary>
    private static (double[] Gram, long[] Zeros) Products(TaskBatch batch, double zeroTolerance)
    {
        int n = batch.Count;
        long length = batch.Length;
        var gram = new double[n * n];
        var zeros = new long[n];
        var gate = new object();
        FloatKernels.ForRanges(length, FloatKernels.Pieces(length * n), (_, start, end) =>
        {
            var g = new double[n * n];
            var z = new long[n];
            var block = (double*)NativeMemory.AlignedAlloc((nuint)(n * Block * sizeof(double)), 64);
            try
            {
                for (long s = start; s < end; s += Block)
                {
                    int count = (int)Math.Min(Block, end - s);
                    for (int t = 0; t < n; t++)
                        z[t] += Widen(batch.Pointer(t) + s, batch.BasePointer is null ? null : batch.BasePointer + s, block + t * Block, count, zeroTolerance);
                    for (int i = 0; i < n; i++)
                        for (int j = i; j < n; j++)
                            g[i * n + j] += Dot(block + i * Block, block + j * Block, count);
                }
            }
            finally
            {
                NativeMemory.AlignedFree(block);
            }

            lock (gate)
            {
                for (int k = 0; k < g.Length; k++) gram[k] += g[k];
                for (int t = 0; t < n; t++) zeros[t] += z[t];
            }
        });
        return (gram, zeros);
    }

    /// <summary>destination[i] = τ[i] = x[i] − b[i] (x[i] when b is null) in float32, widened; returns how many have |τ| ≤ tolerance (NaN never does).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static long Widen(float* x, float* b, double* destination, int count, double tolerance)
    {
        long small = 0;
        for (int i = 0; i < count; i++)
        {
            double v = b is null ? x[i] : x[i] - b[i];
            destination[i] = v;
            small += Math.Abs(v) <= tolerance ? 1 : 0;
        }

        return small;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double Dot(double* a, double* b, int count)
    {
        var sum = Vector<double>.Zero;
        int i = 0;
        for (; i + Vector<double>.Count <= count; i += Vector<double>.Count)
            sum += Unsafe.ReadUnaligned<Vector<double>>(a + i) * Unsafe.ReadUnaligned<Vector<double>>(b + i);
        double total = Vector.Sum(sum);
        for (; i < count; i++) total += a[i] * b[i];
        return total;
    }

    /// <summary>
    /// Cumulative singular-value energy of one 2-D tensor of one task vector (the paper's Fig. 2b):
    /// element k is Σ_{i≤k} σi² / Σ σi², so a low-rank update reaches 1 early.
    /// </summary>
    /// <exception cref="ArgumentException">The tensor is not 2-D.</exception>
    public static double[] CumulativeSingularValueEnergy(ITaskVectorSet taskVectors, int task, string tensorName)
    {
        var shape = taskVectors.GetShape(tensorName);
        if (shape.Length != 2)
            throw new ArgumentException($"Singular values need a 2-D tensor; '{tensorName}' has shape [{string.Join(", ", shape)}].", nameof(tensorName));
        using var scope = NewDisposeScope();
        // σi² are the eigenvalues of the smaller Gram matrix: a symmetric eigensolver on it costs a fraction of an
        // SVD, and its rounding (about 1e-16 of σ1²) is far below what an energy fraction can show.
        var tau = taskVectors.Get(task, tensorName).to(ScalarType.Float64);
        var gram = shape[0] <= shape[1] ? tau.matmul(tau.t()) : tau.t().matmul(tau);
        var energy = linalg.eigvalsh(gram).flip(0).clamp_min(0);
        var total = energy.sum().item<double>();
        if (total == 0) return Enumerable.Repeat(1.0, (int)energy.shape[0]).ToArray();
        return energy.cumsum(0).div(total).data<double>().ToArray();
    }
}
