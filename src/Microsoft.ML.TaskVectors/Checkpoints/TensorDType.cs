using TorchSharp;

namespace Microsoft.ML.TaskVectors.Checkpoints;

/// <summary>Element types a safetensors file can declare.</summary>
public enum TensorDType
{
    /// <summary>Boolean, one byte.</summary>
    Bool,
    /// <summary>Unsigned 8-bit integer.</summary>
    U8,
    /// <summary>Signed 8-bit integer.</summary>
    I8,
    /// <summary>Signed 16-bit integer.</summary>
    I16,
    /// <summary>Unsigned 16-bit integer.</summary>
    U16,
    /// <summary>Signed 32-bit integer.</summary>
    I32,
    /// <summary>Unsigned 32-bit integer.</summary>
    U32,
    /// <summary>Signed 64-bit integer (for example position-id buffers).</summary>
    I64,
    /// <summary>Unsigned 64-bit integer.</summary>
    U64,
    /// <summary>IEEE half precision.</summary>
    F16,
    /// <summary>bfloat16.</summary>
    BF16,
    /// <summary>IEEE single precision.</summary>
    F32,
    /// <summary>IEEE double precision.</summary>
    F64,
}

/// <summary>Conversions between <see cref="TensorDType"/>, safetensors names and TorchSharp types.</summary>
public static class TensorDTypeExtensions
{
    private static readonly Dictionary<string, TensorDType> ByName = new(StringComparer.Ordinal)
    {
        ["BOOL"] = TensorDType.Bool, ["U8"] = TensorDType.U8, ["I8"] = TensorDType.I8,
        ["I16"] = TensorDType.I16, ["U16"] = TensorDType.U16, ["I32"] = TensorDType.I32,
        ["U32"] = TensorDType.U32, ["I64"] = TensorDType.I64, ["U64"] = TensorDType.U64,
        ["F16"] = TensorDType.F16, ["BF16"] = TensorDType.BF16, ["F32"] = TensorDType.F32,
        ["F64"] = TensorDType.F64,
    };

    /// <summary>The name safetensors uses in its header ("F32", "BF16", …).</summary>
    public static string ToSafetensorsName(this TensorDType dtype) => dtype switch
    {
        TensorDType.Bool => "BOOL",
        _ => dtype.ToString().ToUpperInvariant(),
    };

    /// <summary>Parses a safetensors dtype name; returns false for names this library does not know.</summary>
    public static bool TryParseSafetensorsName(string name, out TensorDType dtype) => ByName.TryGetValue(name, out dtype);

    /// <summary>Bytes per element.</summary>
    public static int ElementSize(this TensorDType dtype) => dtype switch
    {
        TensorDType.Bool or TensorDType.U8 or TensorDType.I8 => 1,
        TensorDType.I16 or TensorDType.U16 or TensorDType.F16 or TensorDType.BF16 => 2,
        TensorDType.I32 or TensorDType.U32 or TensorDType.F32 => 4,
        _ => 8,
    };

    /// <summary>True for F16, BF16, F32 and F64: the types task vectors are made of.</summary>
    public static bool IsFloatingPoint(this TensorDType dtype) =>
        dtype is TensorDType.F16 or TensorDType.BF16 or TensorDType.F32 or TensorDType.F64;

    /// <summary>The TorchSharp scalar type, or null where libtorch has none (U16, U32, U64).</summary>
    public static torch.ScalarType? ToScalarType(this TensorDType dtype) => dtype switch
    {
        TensorDType.Bool => torch.ScalarType.Bool,
        TensorDType.U8 => torch.ScalarType.Byte,
        TensorDType.I8 => torch.ScalarType.Int8,
        TensorDType.I16 => torch.ScalarType.Int16,
        TensorDType.I32 => torch.ScalarType.Int32,
        TensorDType.I64 => torch.ScalarType.Int64,
        TensorDType.F16 => torch.ScalarType.Float16,
        TensorDType.BF16 => torch.ScalarType.BFloat16,
        TensorDType.F32 => torch.ScalarType.Float32,
        TensorDType.F64 => torch.ScalarType.Float64,
        _ => null,
    };

    /// <summary>The <see cref="TensorDType"/> of a TorchSharp scalar type.</summary>
    /// <exception cref="NotSupportedException">The scalar type has no safetensors equivalent here.</exception>
    public static TensorDType FromScalarType(torch.ScalarType type) => type switch
    {
        torch.ScalarType.Bool => TensorDType.Bool,
        torch.ScalarType.Byte => TensorDType.U8,
        torch.ScalarType.Int8 => TensorDType.I8,
        torch.ScalarType.Int16 => TensorDType.I16,
        torch.ScalarType.Int32 => TensorDType.I32,
        torch.ScalarType.Int64 => TensorDType.I64,
        torch.ScalarType.Float16 => TensorDType.F16,
        torch.ScalarType.BFloat16 => TensorDType.BF16,
        torch.ScalarType.Float32 => TensorDType.F32,
        torch.ScalarType.Float64 => TensorDType.F64,
        _ => throw new NotSupportedException($"Tensors of type {type} cannot be stored in safetensors by this library."),
    };
}
