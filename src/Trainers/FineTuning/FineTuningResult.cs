namespace Microsoft.ML.TaskVectors.Trainers.FineTuning;

/// <summary>What a fine-tuning run did and where it wrote its files.</summary>
/// <param name="TaskName">The task.</param>
/// <param name="Steps">Optimizer steps run.</param>
/// <param name="Epochs">Per-epoch loss and accuracy, in order.</param>
/// <param name="StepLosses">Every step's batch cross-entropy, in order.</param>
/// <param name="PretrainedValidationAccuracy">The pre-trained model's validation accuracy with the same head, or null when not measured.</param>
/// <param name="PretrainedTestAccuracy">The pre-trained model's test accuracy, or null when not measured or there is no test split.</param>
/// <param name="ValidationAccuracy">The fine-tuned model's validation accuracy, or null when not measured.</param>
/// <param name="TestAccuracy">The fine-tuned model's test accuracy, or null when there is no test split.</param>
/// <param name="Device">The device trained on (<c>cpu</c>, <c>cuda:0</c>, …).</param>
/// <param name="Elapsed">Wall-clock time of the run.</param>
public sealed record FineTuningResult(
    string TaskName,
    int Steps,
    IReadOnlyList<FineTuningEpoch> Epochs,
    IReadOnlyList<double> StepLosses,
    double? PretrainedValidationAccuracy,
    double? PretrainedTestAccuracy,
    double? ValidationAccuracy,
    double? TestAccuracy,
    string Device,
    TimeSpan Elapsed)
{
    /// <summary>The task vector file written, or null when the run kept the model in memory.</summary>
    public string? TaskVectorPath { get; init; }

    /// <summary>The head file written next to the task vector, or null.</summary>
    public string? HeadPath { get; init; }

    /// <summary>The fine-tuned model folder written, or null when not asked for.</summary>
    public string? CheckpointPath { get; init; }
}
