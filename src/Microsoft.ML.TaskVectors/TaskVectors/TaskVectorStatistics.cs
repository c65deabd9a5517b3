using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.TaskVectors;

/// <summary>
/// Norms, sparsity and pairwise cosine similarity of N task vectors, computed in one streaming pass
/// (one tensor of each task vector in memory at a time, accumulated in float64).
/// </summary>
public sealed class TaskVectorStatistics
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
            var rows = stack(Enumerable.Range(0, n).Select(t => taskVectors.Get(t, name).reshape(-1)).ToArray()).to(ScalarType.Float64);
            var g = rows.matmul(rows.t()).data<double>().ToArray();
            var z = rows.abs().le(zeroTolerance).sum(1).data<long>().ToArray();
            var norms = new double[n];
            for (int i = 0; i < n; i++)
            {
                zeros[i] += z[i];
                norms[i] = Math.Sqrt(g[i * n + i]);
                for (int j = 0; j < n; j++) gram[i, j] += g[i * n + j];
            }
            tensorNorms[name] = norms;
            count += rows.shape[1];
            progress?.Report(++done / (double)taskVectors.TensorNames.Count);
        }
        return new TaskVectorStatistics(taskVectors.TaskNames, gram, zeros, count, tensorNorms);
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
        var sigma = linalg.svdvals(taskVectors.Get(task, tensorName).to(ScalarType.Float64));
        var energy = sigma.square();
        var total = energy.sum().item<double>();
        if (total == 0) return Enumerable.Repeat(1.0, (int)sigma.shape[0]).ToArray();
        return energy.cumsum(0).div(total).data<double>().ToArray();
    }
}
