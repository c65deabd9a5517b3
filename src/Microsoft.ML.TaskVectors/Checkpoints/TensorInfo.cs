namespace Microsoft.ML.TaskVectors.Checkpoints;

/// <summary>Name, element type and shape of one stored tensor.</summary>
/// <param name="Name">The tensor's name in the checkpoint.</param>
/// <param name="DType">The stored element type.</param>
/// <param name="Shape">The shape; empty for a scalar.</param>
public sealed record TensorInfo(string Name, TensorDType DType, long[] Shape)
{
    /// <summary>Number of elements (1 for a scalar).</summary>
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (var d in Shape) n = checked(n * d);
            return n;
        }
    }

    /// <summary>Size of the tensor's data in bytes.</summary>
    public long ByteLength => checked(ElementCount * DType.ElementSize());

    /// <summary>The shape as text, for example <c>[768, 3072]</c>.</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";

    /// <summary>True when both describe the same dtype and shape.</summary>
    public bool HasSameLayout(TensorInfo other) => DType == other.DType && Shape.AsSpan().SequenceEqual(other.Shape);
}
