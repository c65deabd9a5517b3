namespace Microsoft.ML.TaskVectors.Trainers.FineTuning;

/// <summary>Which frozen head a <see cref="FineTuner"/> builds when the caller gives none.</summary>
public enum FineTuningHeadKind
{
    /// <summary>
    /// CLIP's zero-shot head from the model's text tower and tokenizer, with the task's prompt templates when the task
    /// name is known (see <see cref="FineTuner.TemplatesFor"/>), as task_vectors fine-tunes.
    /// </summary>
    ZeroShot,

    /// <summary>A linear probe fitted on the pre-trained model's features of the train split.</summary>
    Linear,
}
