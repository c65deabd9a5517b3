namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>Over which entries TIES ranks magnitudes when trimming each task vector.</summary>
public enum TiesRanking
{
    /// <summary>Rank over the whole flattened task vector (all tensors of the set), as in the TIES paper.</summary>
    Global,

    /// <summary>Rank within each tensor separately.</summary>
    PerTensor,
}

/// <summary>How TIES combines the kept values that agree with the elected sign.</summary>
public enum TiesAggregation
{
    /// <summary>Average of the agreeing kept values ("dis-mean").</summary>
    DisjointMean,

    /// <summary>Sum of the agreeing kept values ("dis-sum").</summary>
    DisjointSum,
}
