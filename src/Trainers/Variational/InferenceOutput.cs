using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.Variational;

/// <summary>What an <see cref="InferenceNetwork"/> gives for a batch; heads that were not asked for are null.</summary>
/// <param name="Mean">μ(x) [B, N, M].</param>
/// <param name="LogVariance">log σ²(x) [B, N, M], clamped to the configured range.</param>
/// <param name="InclusionLogits">Inclusion logits [B, N, M]; π(x) = sigmoid(logits).</param>
public sealed record InferenceOutput(Tensor? Mean, Tensor? LogVariance, Tensor? InclusionLogits) : IDisposable
{
    /// <inheritdoc />
    public void Dispose()
    {
        Mean?.Dispose();
        LogVariance?.Dispose();
        InclusionLogits?.Dispose();
    }
}
