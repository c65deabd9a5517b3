namespace Microsoft.ML.TaskVectors.Data;

/// <summary>
/// How a validation split is carved from a training split that has no validation folder, as aTLAS
/// does: ⌊<see cref="Fraction"/> · n⌋ training items, at most <see cref="MaxCount"/>, chosen by a
/// shuffle seeded with <see cref="Seed"/>; the training split then excludes them. Both keep the
/// original order of the items they hold. Defaults: 10 %, at most 5,000, seed 0.
/// </summary>
/// <param name="Fraction">Fraction of the training items moved to validation, in (0, 1).</param>
/// <param name="MaxCount">Upper bound on the validation items.</param>
/// <param name="Seed">Seed of the <see cref="Random"/> whose Fisher–Yates shuffle picks them: the items at
/// the first positions of the shuffled order go to validation.</param>
public sealed record ValidationCarve(double Fraction = 0.1, int MaxCount = 5000, int Seed = 0)
{
    /// <summary>The default carve: 10 %, at most 5,000 items, seed 0.</summary>
    public static ValidationCarve Default { get; } = new();

    /// <summary>How many of <paramref name="trainCount"/> items go to validation.</summary>
    public int ValidationCount(int trainCount)
    {
        Validate();
        return (int)Math.Min(Math.Floor(trainCount * Fraction), MaxCount);
    }

    /// <summary>
    /// Splits item indices 0 … <paramref name="trainCount"/> − 1 into the remaining training indices and
    /// the validation indices, each ascending. The same arguments always give the same split.
    /// </summary>
    public (int[] Train, int[] Validation) Split(int trainCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(trainCount);
        var valCount = ValidationCount(trainCount);
        var order = Enumerable.Range(0, trainCount).ToArray();
        // Our own Fisher–Yates over seeded Random.Next, whose sequence .NET keeps stable across
        // versions (Random.Shuffle's algorithm is not documented).
        var random = new Random(Seed);
        for (var i = trainCount - 1; i > 0; i--)
        {
            var j = random.Next(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        var validation = order[..valCount];
        var train = order[valCount..];
        Array.Sort(validation);
        Array.Sort(train);
        return (train, validation);
    }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> when a field is out of range.</summary>
    public void Validate()
    {
        if (!(Fraction > 0 && Fraction < 1))
            throw new ArgumentOutOfRangeException(nameof(Fraction), $"The validation fraction must be in (0, 1); got {Fraction}.");
        if (MaxCount < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxCount), $"The validation cap must be at least 1; got {MaxCount}.");
    }
}
