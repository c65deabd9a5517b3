namespace Microsoft.ML.TaskVectors.Heads;

/// <summary>A fitted linear probe and how the fit went.</summary>
/// <param name="Head">The fitted head (the caller owns and disposes it).</param>
/// <param name="L2">The L2 strength used (the default resolved to a number).</param>
/// <param name="Iterations">L-BFGS iterations run.</param>
/// <param name="Converged">True when the gradient tolerance was met; false when the fit stopped at the iteration limit or could not improve further.</param>
/// <param name="Losses">The objective (mean cross-entropy + (L2/2)·‖W‖²) at the start and after each iteration; never increasing.</param>
/// <param name="TrainAccuracy">Fraction of the training rows the head classifies correctly.</param>
public sealed record LinearProbeResult(LinearHead Head, double L2, int Iterations, bool Converged, IReadOnlyList<double> Losses, double TrainAccuracy);
