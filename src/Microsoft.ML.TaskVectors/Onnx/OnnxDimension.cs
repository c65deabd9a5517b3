namespace Microsoft.ML.TaskVectors.Onnx;

/// <summary>
/// One dimension of a graph input or output: a fixed size, or a named symbol such as <c>batch</c>
/// that the runtime binds per call. Integers and strings convert implicitly, so shapes read
/// <c>("batch", 3, 224, 224)</c>. The default value is an unknown, unnamed dimension.
/// </summary>
public readonly record struct OnnxDimension
{
    private OnnxDimension(long? size, string? symbol)
    {
        Size = size;
        Symbol = symbol;
    }

    /// <summary>The fixed size, or null for a symbolic dimension.</summary>
    public long? Size { get; }

    /// <summary>The symbol, or null for a fixed dimension.</summary>
    public string? Symbol { get; }

    /// <summary>A fixed size (zero or more).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="size"/> is negative.</exception>
    public static OnnxDimension Fixed(long size)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        return new OnnxDimension(size, null);
    }

    /// <summary>A named dimension; inputs and outputs sharing a symbol share its size.</summary>
    public static OnnxDimension Symbolic(string symbol)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(symbol);
        return new OnnxDimension(null, symbol);
    }

    /// <summary>A fixed size.</summary>
    public static implicit operator OnnxDimension(long size) => Fixed(size);

    /// <summary>A fixed size.</summary>
    public static implicit operator OnnxDimension(int size) => Fixed(size);

    /// <summary>A named dimension.</summary>
    public static implicit operator OnnxDimension(string symbol) => Symbolic(symbol);

    /// <inheritdoc />
    public override string ToString() => Symbol ?? Size?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "?";
}
