namespace Microsoft.ML.TaskVectors.Trainers.FineTuning;

/// <summary>What a <see cref="FineTuner"/> is doing when it reports progress.</summary>
public enum FineTuningPhase
{
    /// <summary>Building the head (zero-shot prompts, or features and a linear probe).</summary>
    Head,

    /// <summary>Measuring the pre-trained model's accuracy.</summary>
    PretrainedEvaluation,

    /// <summary>Optimizer steps.</summary>
    Training,

    /// <summary>Measuring the fine-tuned model's accuracy (after an epoch, and on test at the end).</summary>
    Evaluation,

    /// <summary>Writing the task vector, head and checkpoint.</summary>
    Saving,
}
