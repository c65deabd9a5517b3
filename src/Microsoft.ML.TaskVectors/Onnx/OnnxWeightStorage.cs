namespace Microsoft.ML.TaskVectors.Onnx;

/// <summary>How float weights are stored in an ONNX file; the graph computes in float32 either way.</summary>
public enum OnnxWeightStorage
{
    /// <summary>Stored as float32: exact, 4 bytes per weight.</summary>
    Float32,

    /// <summary>
    /// Stored as float16 and cast to float32 in the graph: half the file size (which keeps large
    /// models under ONNX's 2 GB limit) at float16's precision (about 3 significant digits).
    /// </summary>
    Float16,
}
