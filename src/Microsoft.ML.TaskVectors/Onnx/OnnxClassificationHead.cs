using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Onnx;

/// <summary>
/// A classification head appended to an ONNX graph after an embedding value <c>[batch, D]</c>,
/// giving logits <c>[batch, classes]</c>: a linear layer, or CLIP's zero-shot head (scaled cosine
/// similarity with class embeddings). The head keeps its own copy of the weights.
/// </summary>
public sealed class OnnxClassificationHead
{
    private readonly float[] _weight;
    private readonly float[]? _bias;

    private OnnxClassificationHead(OnnxClassificationHeadKind kind, float[] weight, int classes, float[]? bias, float logitScale)
    {
        Kind = kind;
        _weight = weight;
        _bias = bias;
        Classes = classes;
        EmbeddingDim = weight.Length / classes;
        LogitScale = logitScale;
    }

    /// <summary>Linear or zero-shot.</summary>
    public OnnxClassificationHeadKind Kind { get; }

    /// <summary>Number of classes (the logits' width).</summary>
    public int Classes { get; }

    /// <summary>Width of the embeddings the head reads.</summary>
    public int EmbeddingDim { get; }

    /// <summary>The zero-shot multiplier (1 for a linear head).</summary>
    public float LogitScale { get; }

    /// <summary>True when a linear head has a bias.</summary>
    public bool HasBias => _bias is not null;

    /// <summary>A linear head: logits = e·Wᵀ + b.</summary>
    /// <param name="weight">Weight <c>[classes, D]</c> (any floating-point type).</param>
    /// <param name="bias">Bias <c>[classes]</c>, or null for none.</param>
    /// <exception cref="ArgumentException">A shape is wrong.</exception>
    public static OnnxClassificationHead Linear(Tensor weight, Tensor? bias = null)
    {
        var (w, classes) = Matrix(weight, nameof(weight), "linear head weight");
        float[]? b = null;
        if (bias is not null)
        {
            if (bias.ndim != 1 || bias.shape[0] != classes)
                throw new ArgumentException($"Linear head bias must be [{classes}] to match the weight's classes, found [{string.Join(", ", bias.shape)}].", nameof(bias));
            b = Floats(bias);
        }
        return new OnnxClassificationHead(OnnxClassificationHeadKind.Linear, w, classes, b, 1f);
    }

    /// <summary>A linear head from row-major arrays: <paramref name="weight"/> holds <paramref name="classes"/> rows.</summary>
    public static OnnxClassificationHead Linear(float[] weight, int classes, float[]? bias = null)
    {
        var w = Rows(weight, classes, nameof(weight), "linear head weight");
        if (bias is not null && bias.Length != classes)
            throw new ArgumentException($"Linear head bias must have {classes} entries, found {bias.Length}.", nameof(bias));
        return new OnnxClassificationHead(OnnxClassificationHeadKind.Linear, w, classes, (float[]?)bias?.Clone(), 1f);
    }

    /// <summary>
    /// CLIP's zero-shot head: logits = <paramref name="logitScale"/> · normalize(e)·Cᵀ. The class
    /// embeddings are used as given (CLIP's are already unit length).
    /// </summary>
    /// <param name="classEmbeddings">Class embeddings C <c>[classes, D]</c>.</param>
    /// <param name="logitScale">The multiplier, i.e. exp(logit_scale) (100 for OpenAI's CLIP).</param>
    /// <exception cref="ArgumentException">A shape is wrong or the scale is not finite.</exception>
    public static OnnxClassificationHead ZeroShot(Tensor classEmbeddings, float logitScale)
    {
        CheckScale(logitScale);
        var (c, classes) = Matrix(classEmbeddings, nameof(classEmbeddings), "zero-shot class embeddings");
        return new OnnxClassificationHead(OnnxClassificationHeadKind.ZeroShot, c, classes, null, logitScale);
    }

    /// <summary>CLIP's zero-shot head from a row-major array of <paramref name="classes"/> class embeddings.</summary>
    public static OnnxClassificationHead ZeroShot(float[] classEmbeddings, int classes, float logitScale)
    {
        CheckScale(logitScale);
        var c = Rows(classEmbeddings, classes, nameof(classEmbeddings), "zero-shot class embeddings");
        return new OnnxClassificationHead(OnnxClassificationHeadKind.ZeroShot, c, classes, null, logitScale);
    }

    /// <summary>
    /// Appends the head to <paramref name="builder"/>, reading the float value
    /// <paramref name="embeddings"/> <c>[batch, EmbeddingDim]</c>.
    /// </summary>
    /// <param name="builder">The graph.</param>
    /// <param name="embeddings">The embeddings value.</param>
    /// <param name="storage">How the head's weight is stored.</param>
    /// <param name="name">A name hint for the logits value.</param>
    /// <returns>The logits value <c>[batch, Classes]</c>.</returns>
    public string Append(OnnxGraphBuilder builder, string embeddings, OnnxWeightStorage storage = OnnxWeightStorage.Float32, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        name ??= "logits";
        if (Kind == OnnxClassificationHeadKind.Linear)
        {
            var w = builder.AddInitializer("head.weight", _weight, [Classes, EmbeddingDim], storage);
            var b = _bias is null ? null : builder.AddInitializer("head.bias", _bias, [Classes]);
            return builder.Gemm(embeddings, w, b, transB: true, name: name);
        }
        // F.normalize semantics: divide by max(‖e‖, 1e-12) so a zero embedding gives zero logits, not NaN.
        var norm = builder.ReduceL2(embeddings, [-1], keepDims: true, name: "head.norm");
        var safe = builder.Max(norm, builder.FloatScalar(1e-12f), name: "head.norm_clamped");
        var unit = builder.Div(embeddings, safe, name: "head.normalized");
        var classes = builder.AddInitializer("head.class_embeddings", _weight, [Classes, EmbeddingDim], storage);
        var cosine = builder.Gemm(unit, classes, transB: true, name: "head.cosine");
        return builder.Mul(cosine, builder.FloatScalar(LogitScale), name);
    }

    private static void CheckScale(float logitScale)
    {
        if (!float.IsFinite(logitScale))
            throw new ArgumentException($"Zero-shot logit scale must be finite, found {logitScale}.", nameof(logitScale));
    }

    private static (float[] Data, int Rows) Matrix(Tensor t, string parameter, string what)
    {
        ArgumentNullException.ThrowIfNull(t, parameter);
        if (t.ndim != 2 || t.shape[0] < 1 || t.shape[1] < 1)
            throw new ArgumentException($"The {what} must be a non-empty [classes, D] matrix, found [{string.Join(", ", t.shape)}].", parameter);
        if (!t.is_floating_point())
            throw new ArgumentException($"The {what} must be floating point, found {t.dtype}.", parameter);
        return (Floats(t), (int)t.shape[0]);
    }

    private static float[] Rows(float[] data, int rows, string parameter, string what)
    {
        ArgumentNullException.ThrowIfNull(data, parameter);
        if (rows < 1 || data.Length == 0 || data.Length % rows != 0)
            throw new ArgumentException($"The {what} must hold {rows} rows of equal width, found {data.Length} values.", parameter);
        return (float[])data.Clone();
    }

    private static float[] Floats(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().to(ScalarType.Float32, CPU).contiguous().data<float>().ToArray();
    }
}
