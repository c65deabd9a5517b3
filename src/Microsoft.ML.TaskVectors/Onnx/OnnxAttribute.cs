using System.Globalization;
using System.Text;
using Google.Protobuf;
using Microsoft.ML.TaskVectors.Onnx.Protos;

namespace Microsoft.ML.TaskVectors.Onnx;

/// <summary>A named node attribute: an integer, a float, a string, or a list of integers or floats.</summary>
public sealed class OnnxAttribute
{
    private readonly AttributeProto _proto;

    private OnnxAttribute(string name, AttributeProto.Types.AttributeType type, Action<AttributeProto> set)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        _proto = new AttributeProto { Name = name, Type = type };
        set(_proto);
    }

    /// <summary>The attribute's name (such as <c>axis</c>).</summary>
    public string Name => _proto.Name;

    /// <summary>An integer attribute.</summary>
    public static OnnxAttribute Int(string name, long value) =>
        new(name, AttributeProto.Types.AttributeType.Int, a => a.I = value);

    /// <summary>A float attribute.</summary>
    public static OnnxAttribute Float(string name, float value) =>
        new(name, AttributeProto.Types.AttributeType.Float, a => a.F = value);

    /// <summary>A string attribute (stored as UTF-8).</summary>
    public static OnnxAttribute String(string name, string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        return new(name, AttributeProto.Types.AttributeType.String, a => a.S = ByteString.CopyFromUtf8(value));
    }

    /// <summary>A list-of-integers attribute.</summary>
    public static OnnxAttribute Ints(string name, params long[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        return new(name, AttributeProto.Types.AttributeType.Ints, a => a.Ints.AddRange(values));
    }

    /// <summary>A list-of-floats attribute.</summary>
    public static OnnxAttribute Floats(string name, params float[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        return new(name, AttributeProto.Types.AttributeType.Floats, a => a.Floats.AddRange(values));
    }

    internal AttributeProto ToProto() => _proto.Clone();

    /// <inheritdoc />
    public override string ToString()
    {
        var value = _proto.Type switch
        {
            AttributeProto.Types.AttributeType.Int => _proto.I.ToString(CultureInfo.InvariantCulture),
            AttributeProto.Types.AttributeType.Float => _proto.F.ToString(CultureInfo.InvariantCulture),
            AttributeProto.Types.AttributeType.String => "\"" + Encoding.UTF8.GetString(_proto.S.Span) + "\"",
            AttributeProto.Types.AttributeType.Ints => "[" + string.Join(", ", _proto.Ints) + "]",
            _ => "[" + string.Join(", ", _proto.Floats.Select(f => f.ToString(CultureInfo.InvariantCulture))) + "]",
        };
        return Name + "=" + value;
    }
}
