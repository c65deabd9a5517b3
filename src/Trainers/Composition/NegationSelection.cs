namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>
/// The task-negation selection rule (SPEC 2.2): among the candidates whose control accuracy is at least
/// <c>minControlRatio</c> × the pre-trained model's, the one with the lowest target accuracy.
/// </summary>
public static class NegationSelection
{
    /// <summary>Chooses a candidate.</summary>
    /// <param name="candidates">(target, control) accuracy of each candidate, in training order.</param>
    /// <param name="pretrainedControl">The pre-trained model's control accuracy.</param>
    /// <param name="minControlRatio">The constraint's ratio (0.95 in SPEC 2.2).</param>
    /// <returns>
    /// The chosen index and whether it meets the constraint. Ties go to the earliest candidate (less training). When no
    /// candidate meets the constraint, the one with the highest control accuracy (then the lowest target accuracy) is
    /// returned with <c>ConstraintMet</c> false, so the caller can report it rather than fail.
    /// </returns>
    /// <exception cref="ArgumentException">No candidates, or an accuracy or the ratio is not finite.</exception>
    public static (int Index, bool ConstraintMet) Choose(IReadOnlyList<NegationAccuracy> candidates, double pretrainedControl, double minControlRatio = 0.95)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        if (candidates.Count == 0) throw new ArgumentException("The selection rule needs at least one candidate.", nameof(candidates));
        if (!double.IsFinite(pretrainedControl)) throw new ArgumentException($"pretrainedControl must be finite, found {pretrainedControl}.", nameof(pretrainedControl));
        if (!double.IsFinite(minControlRatio)) throw new ArgumentException($"minControlRatio must be finite, found {minControlRatio}.", nameof(minControlRatio));
        for (int i = 0; i < candidates.Count; i++)
            if (!double.IsFinite(candidates[i].Target) || !double.IsFinite(candidates[i].Control))
                throw new ArgumentException($"Candidate {i} has a non-finite accuracy ({candidates[i]}).", nameof(candidates));
        // A hair of tolerance: accuracies are ratios of counts, and 0.95 × a ratio rarely lands exactly on one.
        double floor = minControlRatio * pretrainedControl - 1e-12;
        int best = -1;
        for (int i = 0; i < candidates.Count; i++)
            if (candidates[i].Control >= floor && (best < 0 || candidates[i].Target < candidates[best].Target))
                best = i;
        if (best >= 0) return (best, true);
        best = 0;
        for (int i = 1; i < candidates.Count; i++)
        {
            var (c, b) = (candidates[i], candidates[best]);
            if (c.Control > b.Control || c.Control == b.Control && c.Target < b.Target) best = i;
        }
        return (best, false);
    }
}
