namespace Microsoft.ML.TaskVectors.Heads;

/// <summary>
/// Limited-memory BFGS with a backtracking (Armijo) line search on managed vectors, deterministic by construction.
/// </summary>
/// <remarks>
/// TorchSharp's <c>torch.optim.LBFGS</c> wraps libtorch's without its line-search option, so every step is the
/// learning rate times the quasi-Newton direction: too large diverges, too small crawls. A linear probe's objective
/// is cheap, so a line search costs little and removes the step size as a setting.
/// </remarks>
internal static class Lbfgs
{
    /// <summary>The minimiser reached, how many iterations it took, and the objective before and after each.</summary>
    internal sealed record Outcome(double[] Solution, int Iterations, bool Converged, IReadOnlyList<double> Values);

    private const double Armijo = 1e-4;
    private const int MaxHalvings = 60;

    /// <summary>Minimises <paramref name="objective"/> (value and gradient) from <paramref name="start"/>.</summary>
    /// <param name="objective">The value and gradient at a point; the point must not be modified.</param>
    /// <param name="start">The starting point (not modified).</param>
    /// <param name="maxIterations">Iteration limit.</param>
    /// <param name="gradientTolerance">Converged when every gradient entry is at most this in magnitude.</param>
    /// <param name="historySize">Correction pairs kept.</param>
    /// <param name="onIteration">Called with the iteration count after each iteration.</param>
    /// <param name="cancellationToken">Checked before each iteration.</param>
    public static Outcome Minimize(Func<double[], (double Value, double[] Gradient)> objective, double[] start, int maxIterations,
        double gradientTolerance, int historySize, Action<int>? onIteration, CancellationToken cancellationToken)
    {
        var x = (double[])start.Clone();
        var (f, g) = objective(x);
        if (!double.IsFinite(f)) throw new InvalidOperationException($"The objective is not finite at the starting point ({f}).");
        var values = new List<double> { f };
        var pairs = new LinkedList<(double[] S, double[] Y, double Rho)>();
        int iteration = 0;
        bool converged = MaxAbs(g) <= gradientTolerance;
        while (!converged && iteration < maxIterations)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var direction = Direction(g, pairs);
            double slope = Dot(g, direction);
            if (!(slope < 0))
            {
                // Rounding can make the quasi-Newton direction point uphill: restart from steepest descent.
                pairs.Clear();
                direction = Scaled(g, -1);
                slope = -Dot(g, g);
            }
            // Without curvature pairs the direction's length is the gradient's; minFunc's first step keeps it at most 1.
            double step = pairs.Count == 0 ? Math.Min(1, 1 / SumAbs(g)) : 1;
            double[] xNew, gNew;
            double fNew;
            int halvings = 0;
            while (true)
            {
                xNew = AddScaled(x, direction, step);
                (fNew, gNew) = objective(xNew);
                if (double.IsFinite(fNew) && fNew <= f + Armijo * step * slope) break;
                if (++halvings > MaxHalvings) return new Outcome(x, iteration, false, values);
                step *= 0.5;
            }
            iteration++;
            var s = AddScaled(xNew, x, -1);
            var y = AddScaled(gNew, g, -1);
            double sy = Dot(s, y);
            // Keep only pairs with positive curvature, so the implied Hessian stays positive definite.
            if (sy > 1e-10 * Dot(y, y))
            {
                if (pairs.Count == historySize) pairs.RemoveFirst();
                pairs.AddLast((s, y, 1 / sy));
            }
            double decrease = f - fNew;
            x = xNew;
            f = fNew;
            g = gNew;
            values.Add(f);
            onIteration?.Invoke(iteration);
            converged = MaxAbs(g) <= gradientTolerance;
            // No representable progress is left: further iterations would only repeat this one.
            if (!converged && decrease <= 1e-15 * Math.Max(1, Math.Abs(f))) break;
        }
        return new Outcome(x, iteration, converged, values);
    }

    /// <summary>−H·g by the two-loop recursion over the stored pairs (oldest first).</summary>
    private static double[] Direction(double[] g, LinkedList<(double[] S, double[] Y, double Rho)> pairs)
    {
        var q = (double[])g.Clone();
        var alphas = new double[pairs.Count];
        int i = pairs.Count;
        for (var node = pairs.Last; node is not null; node = node.Previous)
        {
            var (s, y, rho) = node.Value;
            double a = rho * Dot(s, q);
            alphas[--i] = a;
            AddScaledInPlace(q, y, -a);
        }
        if (pairs.Last is { } newest)
        {
            var (s, y, _) = newest.Value;
            double gamma = Dot(s, y) / Dot(y, y);
            for (int k = 0; k < q.Length; k++) q[k] *= gamma;
        }
        i = 0;
        foreach (var (s, y, rho) in pairs)
        {
            double b = rho * Dot(y, q);
            AddScaledInPlace(q, s, alphas[i++] - b);
        }
        for (int k = 0; k < q.Length; k++) q[k] = -q[k];
        return q;
    }

    private static double Dot(double[] a, double[] b)
    {
        double sum = 0;
        for (int k = 0; k < a.Length; k++) sum += a[k] * b[k];
        return sum;
    }

    private static double MaxAbs(double[] a)
    {
        double max = 0;
        foreach (var v in a) max = Math.Max(max, Math.Abs(v));
        return max;
    }

    private static double SumAbs(double[] a)
    {
        double sum = 0;
        foreach (var v in a) sum += Math.Abs(v);
        return sum;
    }

    private static double[] Scaled(double[] a, double c)
    {
        var r = new double[a.Length];
        for (int k = 0; k < a.Length; k++) r[k] = c * a[k];
        return r;
    }

    private static double[] AddScaled(double[] a, double[] b, double c)
    {
        var r = (double[])a.Clone();
        AddScaledInPlace(r, b, c);
        return r;
    }

    private static void AddScaledInPlace(double[] a, double[] b, double c)
    {
        for (int k = 0; k < a.Length; k++) a[k] += c * b[k];
    }
}
