namespace Microsoft.ML.TaskVectors.Onnx;

/// <summary>
/// An ONNX model would exceed protobuf's 2 GB message limit, so no ONNX reader could load it.
/// </summary>
public sealed class OnnxModelTooLargeException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What exceeded the limit and how to avoid it.</param>
    /// <param name="bytes">The size the model reached, in bytes.</param>
    /// <param name="limit">The limit, in bytes.</param>
    public OnnxModelTooLargeException(string message, long bytes, long limit) : base(message)
    {
        Bytes = bytes;
        Limit = limit;
    }

    /// <summary>The size the model reached, in bytes.</summary>
    public long Bytes { get; }

    /// <summary>The limit, in bytes.</summary>
    public long Limit { get; }
}
