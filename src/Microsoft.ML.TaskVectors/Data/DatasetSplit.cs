namespace Microsoft.ML.TaskVectors.Data;

/// <summary>A split of a labelled dataset.</summary>
public enum DatasetSplit
{
    /// <summary>The training images (without the validation images when those are carved from it).</summary>
    Train,

    /// <summary>The validation images: a <c>val</c> folder when the dataset has one, else carved from train (<see cref="ValidationCarve"/>).</summary>
    Validation,

    /// <summary>The test images.</summary>
    Test,
}
