using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.Variational;

/// <summary>
/// The binary concrete (Gumbel-sigmoid) relaxation of ω ~ Bernoulli(π) (Maddison et al. 2017; Jang et al. 2017):
/// ω = sigmoid((logit π + L) / τ) with logistic noise L = log u − log(1 − u), u ~ U(0, 1). As τ → 0 the sample tends to
/// the hard draw 1[logit π + L > 0], which is 1 with probability π; for τ > 0 it is differentiable in the logits
/// (the reparameterisation trick). At test time the spike-and-slab variant uses <see cref="Hard"/>.
/// </summary>
public static class RelaxedBernoulli
{
    /// <summary>u is kept in [1e-6, 1 − 1e-6] so L stays finite (|L| ≤ 13.8) in float32.</summary>
    public const double UniformClamp = 1e-6;

    /// <summary>Logistic noise L = log u − log(1 − u) of <paramref name="shape"/>, drawn from <paramref name="generator"/> (the global generator when null).</summary>
    public static Tensor LogisticNoise(long[] shape, Generator? generator = null, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(shape);
        using var scope = NewDisposeScope();
        // Drawn on the CPU so a CPU generator gives the same noise wherever the logits live.
        var u = rand(shape, dtype: dtype, generator: generator).clamp(UniformClamp, 1 - UniformClamp);
        var noise = (u.log() - (-u).log1p()).to(device ?? CPU);
        return noise.MoveToOuterDisposeScope();
    }

    /// <summary>A relaxed sample sigmoid((logits + L) / τ) with fresh noise from <paramref name="generator"/>.</summary>
    /// <param name="logits">Inclusion logits (any shape).</param>
    /// <param name="temperature">τ &gt; 0 (see <see cref="TemperatureSchedule"/>).</param>
    /// <param name="generator">The noise's source; the global generator when null.</param>
    public static Tensor Sample(Tensor logits, double temperature, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(logits);
        CheckTemperature(temperature);
        using var noise = LogisticNoise(logits.shape, generator, logits.dtype, logits.device);
        return Sample(logits, temperature, noise);
    }

    /// <summary>A relaxed sample sigmoid((logits + noise) / τ) for given logistic noise (same shape as the logits).</summary>
    public static Tensor Sample(Tensor logits, double temperature, Tensor noise)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(noise);
        CheckTemperature(temperature);
        if (!logits.shape.AsSpan().SequenceEqual(noise.shape))
            throw new ArgumentException($"The noise must have the logits' shape [{string.Join(", ", logits.shape)}], found [{string.Join(", ", noise.shape)}].", nameof(noise));
        using var scope = NewDisposeScope();
        return ((logits + noise) / temperature).sigmoid().MoveToOuterDisposeScope();
    }

    /// <summary>The test-time indicator ω = 1[π ≥ 0.5] = 1[logit ≥ 0], in the logits' dtype.</summary>
    public static Tensor Hard(Tensor logits)
    {
        ArgumentNullException.ThrowIfNull(logits);
        using var scope = NewDisposeScope();
        return logits.ge(0).to(logits.dtype).MoveToOuterDisposeScope();
    }

    private static void CheckTemperature(double temperature)
    {
        if (!(temperature > 0) || !double.IsFinite(temperature))
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "The relaxation temperature τ must be a finite positive number.");
    }
}
