namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>Creates merge methods by name (the names the CLI accepts).</summary>
public static class MergeMethods
{
    /// <summary>Weight averaging.</summary>
    public const string AverageName = "average";

    /// <summary>Task arithmetic.</summary>
    public const string TaskArithmeticName = "task-arithmetic";

    /// <summary>TIES merging.</summary>
    public const string TiesName = "ties";

    /// <summary>DARE followed by task arithmetic.</summary>
    public const string DareTaskArithmeticName = "dare-ta";

    /// <summary>DARE followed by TIES.</summary>
    public const string DareTiesName = "dare-ties";

    /// <summary>TSV-M.</summary>
    public const string TsvName = "tsv";

    /// <summary>Task negation.</summary>
    public const string NegateName = "negate";

    /// <summary>WUDI (data-free optimisation of each 2-D weight).</summary>
    public const string WudiName = "wudi";

    /// <summary>Every name <see cref="Create"/> accepts.</summary>
    public static IReadOnlyList<string> Names { get; } =
        Array.AsReadOnly(new[] { AverageName, TaskArithmeticName, TiesName, DareTaskArithmeticName, DareTiesName, TsvName, WudiName, NegateName });

    /// <summary>
    /// Creates the named method (case-insensitive) from <paramref name="options"/>; null options
    /// use every default.
    /// </summary>
    /// <exception cref="ArgumentException">The name is not one of <see cref="Names"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is outside its allowed range.</exception>
    /// <exception cref="InvalidOperationException">TSV-M or WUDI with <see cref="MergeMethodOptions.RequireDevice"/> and a CUDA device that cannot be used.</exception>
    public static MergeMethod Create(string name, MergeMethodOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        var o = options ?? new MergeMethodOptions();
        return name.Trim().ToLowerInvariant() switch
        {
            AverageName => new WeightAveraging(),
            TaskArithmeticName => new TaskArithmetic(o.Lambda ?? TaskArithmetic.DefaultLambda),
            TiesName => CreateTies(o),
            DareTaskArithmeticName => new DareMerging(new TaskArithmetic(o.Lambda ?? TaskArithmetic.DefaultLambda), o.P, o.Seed),
            DareTiesName => new DareMerging(CreateTies(o), o.P, o.Seed),
            TsvName => new TsvMerging(o.Alpha, Runtime.ComputeDevice.Resolve(o.Device, o.RequireDevice)),
            NegateName => new TaskNegation(o.Lambda ?? 1.0),
            WudiName => new WudiMerging(o.WudiLearningRate, o.WudiSteps, Runtime.ComputeDevice.Resolve(o.Device, o.RequireDevice)),
            _ => throw new ArgumentException(
                $"Unknown merge method '{name}'. Valid names: {string.Join(", ", Names)}.", nameof(name)),
        };
    }

    private static TiesMerging CreateTies(MergeMethodOptions o) =>
        new(o.K, o.Lambda ?? 1.0, o.Ranking, o.Aggregation);
}
