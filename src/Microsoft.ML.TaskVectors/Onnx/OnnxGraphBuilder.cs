using System.Buffers.Binary;
using System.Globalization;
using System.Reflection;
using System.Runtime.InteropServices;
using Google.Protobuf;
using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Onnx.Protos;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Onnx;

/// <summary>
/// Builds an ONNX model in memory and writes it: typed inputs and outputs, constant tensors
/// (initializers), and nodes in the order they are added (which is a valid topological order, since a
/// node may only read values defined before it). Values are named by strings; every method that
/// creates a value returns its name, made unique when the requested name is taken.
/// </summary>
/// <example>
/// <code>
/// var b = new OnnxGraphBuilder("linear");
/// var x = b.AddInput("x", OnnxElementType.Float, "batch", 4);
/// var w = b.AddInitializer("w", weights, [3, 4]);
/// b.AddOutput(b.Gemm(x, w, transB: true, name: "y"), OnnxElementType.Float, "batch", 3);
/// b.Save("linear.onnx");
/// </code>
/// </example>
public sealed class OnnxGraphBuilder
{
    /// <summary>The largest serialised model protobuf can read: 2 GB (2³¹ − 1 bytes).</summary>
    public const long ProtobufLimitBytes = int.MaxValue;

    /// <summary>The lowest supported default-domain opset: axes became inputs of Squeeze, Unsqueeze and ReduceSum in 13.</summary>
    public const int MinimumOpsetVersion = 13;

    private readonly GraphProto _graph;
    private readonly HashSet<string> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _nodeNames = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _nextSuffix = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _constants = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _opsets = new(StringComparer.Ordinal);
    private readonly List<KeyValuePair<string, string>> _metadata = [];
    private long _dataBytes;

    /// <summary>Starts an empty graph.</summary>
    /// <param name="graphName">The graph's name (stored in the file; not significant to runtimes).</param>
    /// <param name="opsetVersion">The default-domain operator set; 17 (LayerNormalization) or later is recommended.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="opsetVersion"/> is below <see cref="MinimumOpsetVersion"/>.</exception>
    public OnnxGraphBuilder(string graphName = "graph", int opsetVersion = 17)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(graphName);
        if (opsetVersion < MinimumOpsetVersion)
            throw new ArgumentOutOfRangeException(nameof(opsetVersion), opsetVersion, $"ONNX opset {MinimumOpsetVersion} or later is required.");
        _graph = new GraphProto { Name = graphName };
        OpsetVersion = opsetVersion;
        _opsets[""] = opsetVersion;
        // The IR version each opset was released with (ONNX 1.12: IR 8 / opset 17, 1.14: 9 / 19, 1.16: 10 / 21).
        IrVersion = opsetVersion switch { <= 18 => 8, <= 20 => 9, _ => 10 };
    }

    /// <summary>The default-domain opset version.</summary>
    public int OpsetVersion { get; }

    /// <summary>The ONNX IR version written to the file (derived from the opset; may be changed).</summary>
    public long IrVersion { get; set; }

    /// <summary>The graph's name.</summary>
    public string GraphName => _graph.Name;

    /// <summary>The producer name written to the file.</summary>
    public string ProducerName { get; set; } = "Microsoft.ML.TaskVectors";

    /// <summary>The producer version written to the file (this library's version by default).</summary>
    public string ProducerVersion { get; set; } =
        typeof(OnnxGraphBuilder).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0";

    /// <summary>A human-readable description of the model (Markdown allowed), or null.</summary>
    public string? DocString { get; set; }

    /// <summary>Bytes of initializer data added so far (the bulk of the file's size).</summary>
    public long InitializerBytes => _dataBytes;

    /// <summary>Number of nodes added so far.</summary>
    public int NodeCount => _graph.Node.Count;

    /// <summary>Names of the graph inputs, in order.</summary>
    public IReadOnlyList<string> InputNames => _graph.Input.Select(i => i.Name).ToArray();

    /// <summary>Names of the graph outputs, in order.</summary>
    public IReadOnlyList<string> OutputNames => _graph.Output.Select(o => o.Name).ToArray();

    /// <summary>The size limit enforced on the serialised model; lowered only by tests.</summary>
    internal long MaxModelBytes { get; set; } = ProtobufLimitBytes;

    /// <summary>True when a value (input, initializer or node output) of that name exists.</summary>
    public bool IsDefined(string valueName) => _values.Contains(valueName);

    /// <summary>
    /// Reserves and returns a value name: <paramref name="hint"/> itself when free, otherwise
    /// <c>hint_1</c>, <c>hint_2</c>, … .
    /// </summary>
    public string UniqueName(string hint)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(hint);
        var name = hint;
        if (_values.Contains(name))
        {
            _nextSuffix.TryGetValue(hint, out var i);
            do name = hint + "_" + (++i).ToString(CultureInfo.InvariantCulture);
            while (_values.Contains(name));
            _nextSuffix[hint] = i;
        }
        _values.Add(name);
        return name;
    }

    /// <summary>Adds (or replaces) a <c>metadata_props</c> entry, which ONNX Runtime exposes as custom metadata.</summary>
    public void SetMetadata(string key, string value)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        ArgumentNullException.ThrowIfNull(value);
        _metadata.RemoveAll(kv => kv.Key == key);
        _metadata.Add(new(key, value));
    }

    /// <summary>Imports an operator set of another domain (such as <c>com.microsoft</c>) for nodes of that domain.</summary>
    public void ImportOpset(string domain, long version)
    {
        ArgumentException.ThrowIfNullOrEmpty(domain);
        ArgumentOutOfRangeException.ThrowIfLessThan(version, 1);
        _opsets[domain] = version;
    }

    // ---------------------------------------------------------------- inputs and outputs

    /// <summary>Declares a graph input.</summary>
    /// <param name="name">The input name; must be unused.</param>
    /// <param name="elementType">Element type.</param>
    /// <param name="dims">The shape: fixed sizes and named symbols (<c>"batch"</c>); null leaves the shape unspecified.</param>
    /// <returns>The input's name.</returns>
    /// <exception cref="ArgumentException">The name is taken.</exception>
    public string AddInput(string name, OnnxElementType elementType, params OnnxDimension[]? dims)
    {
        Reserve(name, "graph input");
        _graph.Input.Add(ValueInfo(name, elementType, dims));
        return name;
    }

    /// <summary>Declares <paramref name="value"/> a graph output under its own name.</summary>
    /// <param name="value">A defined value.</param>
    /// <param name="elementType">Element type.</param>
    /// <param name="dims">The shape; null leaves it unspecified.</param>
    /// <returns>The output's name.</returns>
    public string AddOutput(string value, OnnxElementType elementType, params OnnxDimension[]? dims) =>
        AddOutput(value, value, elementType, dims);

    /// <summary>
    /// Declares <paramref name="value"/> a graph output named <paramref name="outputName"/> (an
    /// Identity node renames it when the names differ).
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="value"/> is undefined, or <paramref name="outputName"/> names another value or output.</exception>
    public string AddOutput(string value, string outputName, OnnxElementType elementType, params OnnxDimension[]? dims)
    {
        RequireDefined(value, $"graph output '{outputName}'");
        ArgumentException.ThrowIfNullOrWhiteSpace(outputName);
        if (_graph.Output.Any(o => o.Name == outputName))
            throw new ArgumentException($"'{outputName}' is already a graph output.", nameof(outputName));
        if (value != outputName)
        {
            if (_values.Contains(outputName))
                throw new ArgumentException($"Cannot name graph output '{outputName}': a value of that name already exists (pass it as the value, or choose another name).", nameof(outputName));
            AddNodeCore("Identity", [value], [Reserve(outputName, "graph output")], null, outputName, "");
        }
        _graph.Output.Add(ValueInfo(outputName, elementType, dims));
        return outputName;
    }

    // ---------------------------------------------------------------- initializers

    /// <summary>Adds a float tensor constant.</summary>
    /// <param name="name">A name hint (made unique).</param>
    /// <param name="data">The elements, row-major.</param>
    /// <param name="shape">The shape; its product must equal the element count (an empty shape is a scalar).</param>
    /// <param name="storage">Float32, or Float16 plus a Cast back to float32.</param>
    /// <returns>The name of the float32 value (the Cast's output with float16 storage).</returns>
    public string AddInitializer(string name, ReadOnlySpan<float> data, long[] shape, OnnxWeightStorage storage = OnnxWeightStorage.Float32)
    {
        CheckShape(name, data.Length, shape);
        if (storage == OnnxWeightStorage.Float16)
        {
            var half = new byte[checked(data.Length * 2)];
            for (int i = 0; i < data.Length; i++)
                BinaryPrimitives.WriteUInt16LittleEndian(half.AsSpan(2 * i), BitConverter.HalfToUInt16Bits((Half)data[i]));
            return CastToFloat(AddRaw(name, OnnxElementType.Float16, shape, UnsafeByteOperations.UnsafeWrap(half)));
        }
        return AddRaw(name, OnnxElementType.Float, shape, LittleEndianBytes(data));
    }

    /// <summary>Adds an int64 tensor constant (shapes, indices, axes).</summary>
    /// <returns>The initializer's name.</returns>
    public string AddInitializer(string name, ReadOnlySpan<long> data, long[] shape)
    {
        CheckShape(name, data.Length, shape);
        return AddRaw(name, OnnxElementType.Int64, shape, LittleEndianBytes(data));
    }

    /// <summary>
    /// Adds a TorchSharp tensor as a constant. Floating-point tensors (any precision) become float32
    /// values, stored as <paramref name="storage"/> says; int64 and int32 tensors are stored as they are.
    /// </summary>
    /// <returns>The name of the value to use (for float16 storage, the output of the Cast to float32).</returns>
    /// <exception cref="ArgumentException">The element type is not supported.</exception>
    public string AddInitializer(string name, Tensor tensor, OnnxWeightStorage storage = OnnxWeightStorage.Float32)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        using var scope = NewDisposeScope();
        var shape = tensor.shape;
        if (tensor.is_floating_point())
        {
            var half = storage == OnnxWeightStorage.Float16;
            var data = tensor.to(half ? ScalarType.Float16 : ScalarType.Float32, CPU).contiguous();
            var stored = AddRaw(name, half ? OnnxElementType.Float16 : OnnxElementType.Float, shape, TensorData(data));
            return half ? CastToFloat(stored) : stored;
        }
        var type = tensor.dtype switch
        {
            ScalarType.Int64 => OnnxElementType.Int64,
            ScalarType.Int32 => OnnxElementType.Int32,
            _ => throw new ArgumentException($"Initializer '{name}': element type {tensor.dtype} is not supported (floating point, int64 or int32 expected).", nameof(tensor)),
        };
        return AddRaw(name, type, shape, TensorData(tensor.to(CPU).contiguous()));
    }

    /// <summary>A float32 scalar constant (shared between uses).</summary>
    public string FloatScalar(float value) =>
        CachedConstant("f:" + BitConverter.SingleToInt32Bits(value).ToString(CultureInfo.InvariantCulture),
            () => AddInitializer("const_float", [value], []));

    /// <summary>An int64 scalar constant (shared between uses).</summary>
    public string Int64Scalar(long value) =>
        CachedConstant("i:" + value.ToString(CultureInfo.InvariantCulture), () => AddInitializer("const_int64", [value], []));

    /// <summary>A 1-D int64 constant such as a shape or an axis list (shared between uses).</summary>
    public string Int64Vector(params long[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        return CachedConstant("v:" + string.Join(",", values), () => AddInitializer("const_int64s", values, [values.Length]));
    }

    // ---------------------------------------------------------------- nodes

    /// <summary>Adds a node with one output.</summary>
    /// <param name="opType">The operator (such as <c>Relu</c>).</param>
    /// <param name="inputs">Defined value names; an empty string skips an optional input.</param>
    /// <param name="attributes">The node's attributes, or null.</param>
    /// <param name="name">A name hint for the output (and node); the operator name when null.</param>
    /// <returns>The output's name.</returns>
    /// <exception cref="ArgumentException">An input is not defined (yet).</exception>
    public string AddNode(string opType, IReadOnlyList<string> inputs, IReadOnlyList<OnnxAttribute>? attributes = null, string? name = null) =>
        AddNode(opType, inputs, 1, attributes, name)[0];

    /// <summary>Adds a node with several outputs, optionally from another operator domain (see <see cref="ImportOpset"/>).</summary>
    /// <returns>The outputs' names.</returns>
    public IReadOnlyList<string> AddNode(string opType, IReadOnlyList<string> inputs, int outputCount,
        IReadOnlyList<OnnxAttribute>? attributes = null, string? name = null, string domain = "")
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(opType);
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentOutOfRangeException.ThrowIfLessThan(outputCount, 1);
        ArgumentNullException.ThrowIfNull(domain);
        if (domain.Length > 0 && !_opsets.ContainsKey(domain))
            throw new ArgumentException($"Node {opType}: domain '{domain}' is not imported; call ImportOpset first.", nameof(domain));
        var hint = name ?? opType;
        foreach (var input in inputs)
            if (input.Length > 0) RequireDefined(input, $"{opType} node '{hint}'");
        var outputs = new string[outputCount];
        for (int i = 0; i < outputCount; i++)
            outputs[i] = UniqueName(outputCount == 1 ? hint : hint + "_out" + i.ToString(CultureInfo.InvariantCulture));
        AddNodeCore(opType, inputs, outputs, attributes, hint, domain);
        return outputs;
    }

    // ---------------------------------------------------------------- operator helpers

    /// <summary>Matrix product with NumPy broadcasting (<c>MatMul</c>).</summary>
    public string MatMul(string a, string b, string? name = null) => AddNode("MatMul", [a, b], null, name);

    /// <summary>
    /// <c>Gemm</c>: alpha·op(A)·op(B) + beta·C for 2-D A and B, op transposing when asked; C broadcasts
    /// (null for none). <c>Gemm(x, W, b, transB: true)</c> is a linear layer with a <c>[out, in]</c> weight.
    /// </summary>
    public string Gemm(string a, string b, string? c = null, float alpha = 1f, float beta = 1f,
        bool transA = false, bool transB = false, string? name = null)
    {
        var attributes = new List<OnnxAttribute>();
        if (alpha != 1f) attributes.Add(OnnxAttribute.Float("alpha", alpha));
        if (beta != 1f) attributes.Add(OnnxAttribute.Float("beta", beta));
        if (transA) attributes.Add(OnnxAttribute.Int("transA", 1));
        if (transB) attributes.Add(OnnxAttribute.Int("transB", 1));
        return AddNode("Gemm", c is null ? [a, b] : [a, b, c], attributes, name);
    }

    /// <summary>Element-wise sum with broadcasting.</summary>
    public string Add(string a, string b, string? name = null) => AddNode("Add", [a, b], null, name);

    /// <summary>Element-wise difference with broadcasting.</summary>
    public string Sub(string a, string b, string? name = null) => AddNode("Sub", [a, b], null, name);

    /// <summary>Element-wise product with broadcasting.</summary>
    public string Mul(string a, string b, string? name = null) => AddNode("Mul", [a, b], null, name);

    /// <summary>Element-wise quotient with broadcasting.</summary>
    public string Div(string a, string b, string? name = null) => AddNode("Div", [a, b], null, name);

    /// <summary>Element-wise maximum with broadcasting.</summary>
    public string Max(string a, string b, string? name = null) => AddNode("Max", [a, b], null, name);

    /// <summary>Element-wise logistic sigmoid.</summary>
    public string Sigmoid(string x, string? name = null) => AddNode("Sigmoid", [x], null, name);

    /// <summary>Element-wise error function.</summary>
    public string Erf(string x, string? name = null) => AddNode("Erf", [x], null, name);

    /// <summary>Element-wise square root.</summary>
    public string Sqrt(string x, string? name = null) => AddNode("Sqrt", [x], null, name);

    /// <summary>Element-wise exponential.</summary>
    public string Exp(string x, string? name = null) => AddNode("Exp", [x], null, name);

    /// <summary>A copy of <paramref name="x"/> under a new name.</summary>
    public string Identity(string x, string? name = null) => AddNode("Identity", [x], null, name);

    /// <summary>
    /// 2-D (or N-D) convolution, <c>Conv</c>: input <c>[N, C, …]</c>, weight <c>[M, C/group, k…]</c>,
    /// optional bias <c>[M]</c>.
    /// </summary>
    /// <param name="x">Input.</param>
    /// <param name="weight">Kernel.</param>
    /// <param name="bias">Bias, or null.</param>
    /// <param name="strides">Stride per spatial axis, or null for 1.</param>
    /// <param name="pads">Padding as all begins then all ends (<c>[top, left, bottom, right]</c> in 2-D), or null for none.</param>
    /// <param name="dilations">Dilation per spatial axis, or null for 1.</param>
    /// <param name="group">Number of groups.</param>
    /// <param name="name">Output name hint.</param>
    public string Conv(string x, string weight, string? bias = null, long[]? strides = null, long[]? pads = null,
        long[]? dilations = null, long group = 1, string? name = null)
    {
        var attributes = new List<OnnxAttribute>();
        if (strides is not null) attributes.Add(OnnxAttribute.Ints("strides", strides));
        if (pads is not null) attributes.Add(OnnxAttribute.Ints("pads", pads));
        if (dilations is not null) attributes.Add(OnnxAttribute.Ints("dilations", dilations));
        if (group != 1) attributes.Add(OnnxAttribute.Int("group", group));
        return AddNode("Conv", bias is null ? [x, weight] : [x, weight, bias], attributes, name);
    }

    /// <summary>Reshapes to a constant shape; 0 copies the input's dimension, −1 is inferred.</summary>
    public string Reshape(string x, long[] shape, string? name = null) => Reshape(x, Int64Vector(shape), name);

    /// <summary>Reshapes to the shape held by the 1-D int64 value <paramref name="shape"/>.</summary>
    public string Reshape(string x, string shape, string? name = null) => AddNode("Reshape", [x, shape], null, name);

    /// <summary>Permutes the axes.</summary>
    public string Transpose(string x, long[] perm, string? name = null) =>
        AddNode("Transpose", [x], [OnnxAttribute.Ints("perm", perm)], name);

    /// <summary>Joins tensors along <paramref name="axis"/>.</summary>
    public string Concat(IReadOnlyList<string> inputs, long axis, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        if (inputs.Count == 0) throw new ArgumentException("Concat needs at least one input.", nameof(inputs));
        return AddNode("Concat", inputs, [OnnxAttribute.Int("axis", axis)], name);
    }

    /// <summary>Picks entries along <paramref name="axis"/> by the int64 indices value.</summary>
    public string Gather(string data, string indices, long axis = 0, string? name = null) =>
        AddNode("Gather", [data, indices], axis == 0 ? null : [OnnxAttribute.Int("axis", axis)], name);

    /// <summary>Takes one index along <paramref name="axis"/>, removing that axis (as <c>x[:, i]</c> does).</summary>
    public string Gather(string data, long index, long axis = 0, string? name = null) =>
        Gather(data, Int64Scalar(index), axis, name);

    /// <summary>Slices with constant starts, ends, axes (null: the first axes) and steps (null: 1).</summary>
    public string Slice(string x, long[] starts, long[] ends, long[]? axes = null, long[]? steps = null, string? name = null)
    {
        if (starts.Length != ends.Length || (axes is not null && axes.Length != starts.Length) || (steps is not null && steps.Length != starts.Length))
            throw new ArgumentException($"Slice '{name ?? x}': starts, ends, axes and steps must have the same length.");
        var inputs = new List<string> { x, Int64Vector(starts), Int64Vector(ends) };
        if (axes is not null || steps is not null) inputs.Add(axes is null ? "" : Int64Vector(axes));
        if (steps is not null) inputs.Add(Int64Vector(steps));
        return AddNode("Slice", inputs, null, name);
    }

    /// <summary>Softmax along one axis.</summary>
    public string Softmax(string x, long axis = -1, string? name = null) =>
        AddNode("Softmax", [x], [OnnxAttribute.Int("axis", axis)], name);

    /// <summary>
    /// <c>LayerNormalization</c> (opset 17) over the axes from <paramref name="axis"/> to the last:
    /// (x − mean) / sqrt(var + ε) · scale + bias.
    /// </summary>
    /// <exception cref="NotSupportedException">The builder's opset is below 17.</exception>
    public string LayerNormalization(string x, string scale, string? bias = null, long axis = -1, float epsilon = 1e-5f, string? name = null)
    {
        RequireOpset(17, "LayerNormalization");
        return AddNode("LayerNormalization", bias is null ? [x, scale] : [x, scale, bias],
            [OnnxAttribute.Int("axis", axis), OnnxAttribute.Float("epsilon", epsilon)], name);
    }

    /// <summary>Euclidean norm over <paramref name="axes"/>.</summary>
    public string ReduceL2(string x, long[] axes, bool keepDims = true, string? name = null) =>
        // Axes moved from an attribute to an input for ReduceL2 in opset 18.
        OpsetVersion >= 18
            ? AddNode("ReduceL2", [x, Int64Vector(axes)], [OnnxAttribute.Int("keepdims", keepDims ? 1 : 0)], name)
            : AddNode("ReduceL2", [x], [OnnxAttribute.Ints("axes", axes), OnnxAttribute.Int("keepdims", keepDims ? 1 : 0)], name);

    /// <summary>Sum over <paramref name="axes"/>.</summary>
    public string ReduceSum(string x, long[] axes, bool keepDims = true, string? name = null) =>
        AddNode("ReduceSum", [x, Int64Vector(axes)], [OnnxAttribute.Int("keepdims", keepDims ? 1 : 0)], name);

    /// <summary>Inserts size-1 axes.</summary>
    public string Unsqueeze(string x, long[] axes, string? name = null) => AddNode("Unsqueeze", [x, Int64Vector(axes)], null, name);

    /// <summary>Removes size-1 axes.</summary>
    public string Squeeze(string x, long[] axes, string? name = null) => AddNode("Squeeze", [x, Int64Vector(axes)], null, name);

    /// <summary>Broadcasts to the shape held by the 1-D int64 value <paramref name="shape"/>.</summary>
    public string Expand(string x, string shape, string? name = null) => AddNode("Expand", [x, shape], null, name);

    /// <summary>Broadcasts to a constant shape.</summary>
    public string Expand(string x, long[] shape, string? name = null) => Expand(x, Int64Vector(shape), name);

    /// <summary>The shape of <paramref name="x"/> as a 1-D int64 value, optionally only dimensions [start, end).</summary>
    public string Shape(string x, long? start = null, long? end = null, string? name = null)
    {
        if ((start is not null || end is not null) && OpsetVersion < 15)
            throw new NotSupportedException($"Shape with start/end needs opset 15 or later; this graph uses opset {OpsetVersion}.");
        var attributes = new List<OnnxAttribute>();
        if (start is { } s) attributes.Add(OnnxAttribute.Int("start", s));
        if (end is { } e) attributes.Add(OnnxAttribute.Int("end", e));
        return AddNode("Shape", [x], attributes, name);
    }

    /// <summary>Converts the element type.</summary>
    public string Cast(string x, OnnxElementType to, string? name = null) =>
        AddNode("Cast", [x], [OnnxAttribute.Int("to", (long)to)], name);

    /// <summary>Einstein summation, e.g. <c>Einsum("bij,bjk->bik", [a, b])</c>.</summary>
    public string Einsum(string equation, IReadOnlyList<string> inputs, string? name = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(equation);
        return AddNode("Einsum", inputs, [OnnxAttribute.String("equation", equation)], name);
    }

    // ---------------------------------------------------------------- output

    /// <summary>Serialises the model.</summary>
    /// <exception cref="InvalidOperationException">The graph has no outputs.</exception>
    /// <exception cref="OnnxModelTooLargeException">The model exceeds ONNX's 2 GB protobuf limit.</exception>
    public byte[] ToBytes() => BuildModel().ToByteArray();

    /// <summary>Writes the model to <paramref name="path"/> atomically (readers see the old file or the complete new one).</summary>
    /// <exception cref="InvalidOperationException">The graph has no outputs.</exception>
    /// <exception cref="OnnxModelTooLargeException">The model exceeds ONNX's 2 GB protobuf limit; nothing is written.</exception>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var model = BuildModel();
        AtomicFile.Write(path, stream => model.WriteTo(stream));
    }

    internal ModelProto BuildModel()
    {
        if (_graph.Output.Count == 0)
            throw new InvalidOperationException($"ONNX graph '{GraphName}' has no outputs; call AddOutput first.");
        CheckLimit(_dataBytes, "its initializers");
        var model = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = ProducerName,
            ProducerVersion = ProducerVersion,
            Graph = _graph,
        };
        if (DocString is not null) model.DocString = DocString;
        foreach (var (domain, version) in _opsets)
            model.OpsetImport.Add(new OperatorSetIdProto { Domain = domain, Version = version });
        foreach (var (key, value) in _metadata)
            model.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
        // CalculateSize is an int: a wrapped (negative) size means over the limit too.
        long size = model.CalculateSize();
        CheckLimit(size < 0 ? long.MaxValue : size, "the serialised model");
        return model;
    }

    // ---------------------------------------------------------------- internals

    private string Reserve(string name, string what)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (!_values.Add(name))
            throw new ArgumentException($"Cannot declare {what} '{name}': a value of that name already exists in graph '{GraphName}'.", nameof(name));
        return name;
    }

    private void RequireDefined(string value, string user)
    {
        if (!_values.Contains(value))
            throw new ArgumentException($"{user}: value '{value}' is not defined in graph '{GraphName}' (add inputs, initializers and producing nodes first).");
    }

    private void RequireOpset(int version, string op)
    {
        if (OpsetVersion < version)
            throw new NotSupportedException($"{op} needs opset {version} or later; this graph uses opset {OpsetVersion}.");
    }

    private void AddNodeCore(string opType, IReadOnlyList<string> inputs, IReadOnlyList<string> outputs,
        IReadOnlyList<OnnxAttribute>? attributes, string hint, string domain)
    {
        var nodeName = hint;
        for (int i = 1; !_nodeNames.Add(nodeName); i++)
            nodeName = hint + "_" + i.ToString(CultureInfo.InvariantCulture);
        var node = new NodeProto { OpType = opType, Name = nodeName };
        if (domain.Length > 0) node.Domain = domain;
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        if (attributes is not null)
            foreach (var a in attributes) node.Attribute.Add(a.ToProto());
        _graph.Node.Add(node);
    }

    private string CastToFloat(string value) => Cast(value, OnnxElementType.Float, value + "_float32");

    private string CachedConstant(string key, Func<string> create)
    {
        if (!_constants.TryGetValue(key, out var name))
            _constants[key] = name = create();
        return name;
    }

    private string AddRaw(string nameHint, OnnxElementType type, long[] shape, ByteString data)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(nameHint);
        CheckLimit(_dataBytes + data.Length, $"initializer '{nameHint}'");
        var name = UniqueName(nameHint);
        var tensor = new TensorProto { Name = name, DataType = (int)type, RawData = data };
        tensor.Dims.AddRange(shape);
        _graph.Initializer.Add(tensor);
        _dataBytes += data.Length;
        return name;
    }

    private void CheckLimit(long bytes, string what)
    {
        if (bytes > MaxModelBytes)
            throw new OnnxModelTooLargeException(
                $"ONNX graph '{GraphName}' would be {bytes:N0} bytes with {what}, over the {MaxModelBytes:N0}-byte limit "
                + "(ONNX files are protobuf messages, which cannot exceed 2 GB). Store the weights as float16 "
                + "(OnnxWeightStorage.Float16) to halve them, or export a smaller model.",
                bytes, MaxModelBytes);
    }

    private static void CheckShape(string name, long elements, long[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long product = 1;
        foreach (var d in shape)
        {
            if (d < 0) throw new ArgumentException($"Initializer '{name}': shape [{string.Join(", ", shape)}] has a negative dimension.", nameof(shape));
            product = checked(product * d);
        }
        if (product != elements)
            throw new ArgumentException($"Initializer '{name}': shape [{string.Join(", ", shape)}] holds {product} elements but {elements} were given.", nameof(shape));
    }

    private static ValueInfoProto ValueInfo(string name, OnnxElementType elementType, OnnxDimension[]? dims)
    {
        if (!Enum.IsDefined(elementType))
            throw new ArgumentOutOfRangeException(nameof(elementType), elementType, $"'{name}': unknown ONNX element type.");
        var tensorType = new TypeProto.Types.Tensor { ElemType = (int)elementType };
        if (dims is not null)
        {
            var shape = new TensorShapeProto();
            foreach (var d in dims)
                shape.Dim.Add(d.Symbol is { } s ? new TensorShapeProto.Types.Dimension { DimParam = s }
                    : d.Size is { } size ? new TensorShapeProto.Types.Dimension { DimValue = size }
                    : new TensorShapeProto.Types.Dimension());   // default(OnnxDimension): unknown and unnamed
            tensorType.Shape = shape;
        }
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = tensorType } };
    }

    // ONNX stores raw data little-endian; convert only on big-endian hosts.
    private static ByteString LittleEndianBytes(ReadOnlySpan<float> data)
    {
        if (BitConverter.IsLittleEndian) return ByteString.CopyFrom(MemoryMarshal.AsBytes(data));
        var bytes = new byte[checked(data.Length * 4)];
        for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * i), data[i]);
        return UnsafeByteOperations.UnsafeWrap(bytes);
    }

    private static ByteString LittleEndianBytes(ReadOnlySpan<long> data)
    {
        if (BitConverter.IsLittleEndian) return ByteString.CopyFrom(MemoryMarshal.AsBytes(data));
        var bytes = new byte[checked(data.Length * 8)];
        for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(8 * i), data[i]);
        return UnsafeByteOperations.UnsafeWrap(bytes);
    }

    private static ByteString TensorData(Tensor contiguous)
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("Writing ONNX initializers from tensors needs a little-endian host.");
        long bytes = contiguous.NumberOfElements * contiguous.ElementSize;
        if (bytes > int.MaxValue)
            throw new OnnxModelTooLargeException(
                $"A single tensor of {bytes:N0} bytes cannot be stored in an ONNX file (protobuf's 2 GB limit); store it as float16 or split it.",
                bytes, ProtobufLimitBytes);
        return bytes == 0 ? ByteString.Empty : ByteString.CopyFrom(contiguous.bytes);
    }
}
