namespace Microsoft.ML.TaskVectors.Checkpoints;

/// <summary>A checkpoint file or folder is malformed or does not match what was expected.</summary>
public sealed class CheckpointFormatException : Exception
{
    /// <summary>Creates the exception; <paramref name="path"/> is named at the start of the message.</summary>
    public CheckpointFormatException(string path, string problem, Exception? inner = null)
        : base($"{path}: {problem}", inner)
    {
        Path = path;
    }

    /// <summary>The file or folder at fault.</summary>
    public string Path { get; }
}
