using Microsoft.ML.TaskVectors.Data;
using Microsoft.ML.TaskVectors.Heads;

namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>
/// One task of a composition experiment: labelled images to learn the coefficients on, images to choose
/// the best epoch on and to test on, and the task's frozen head.
/// </summary>
/// <param name="Name">The task's name (matches its task vector's).</param>
/// <param name="Train">Where coefficients are learned (aTLAS: the validation split, 10 % of train).</param>
/// <param name="Head">The frozen classification head on the image embedding.</param>
/// <param name="Selection">Optional split that picks the best epoch; the last epoch is kept when null.</param>
/// <param name="FineTunedAccuracy">This task's fine-tuned accuracy, for normalised accuracy; raw accuracy when null.</param>
public sealed record CompositionTask(string Name, LabeledImageDataset Train, ClassificationHead Head,
    LabeledImageDataset? Selection = null, double? FineTunedAccuracy = null)
{
    /// <summary>Accuracy ÷ fine-tuned accuracy when known, else the accuracy.</summary>
    public double Normalise(double accuracy) => FineTunedAccuracy is double f && f > 0 ? accuracy / f : accuracy;
}
