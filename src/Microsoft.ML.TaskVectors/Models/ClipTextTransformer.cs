using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Models;

/// <summary>
/// The CLIP text transformer (SPEC section 3): token and position embeddings, causal pre-LayerNorm
/// blocks, a final LayerNorm, pooling at the end-of-text token, projection. Parameters carry their
/// Hugging Face names (<c>text_model.…</c>, <c>text_projection.weight</c>).
/// </summary>
public sealed class ClipTextTransformer : nn.Module<Tensor, Tensor>
{
    /// <summary>The name prefix of the tower's parameters.</summary>
    public const string Prefix = "text_model";

    /// <summary>The projection to the joint embedding.</summary>
    public const string ProjectionName = "text_projection.weight";

    /// <summary>Creates the tower with zero weights.</summary>
    public ClipTextTransformer(ClipTextConfig config, int projectionDim) : base(nameof(ClipTextTransformer))
    {
        Config = config;
        ProjectionDim = projectionDim;
        foreach (var (name, shape) in ParameterShapes(config, projectionDim))
            register_parameter(name, nn.Parameter(zeros(shape)));
    }

    /// <summary>The tower's shape.</summary>
    public ClipTextConfig Config { get; }

    /// <summary>Width of the projected embedding.</summary>
    public int ProjectionDim { get; }

    /// <summary>Names and shapes of every parameter, in Hugging Face naming.</summary>
    public static IEnumerable<(string Name, long[] Shape)> ParameterShapes(ClipTextConfig c, int projectionDim)
    {
        yield return ($"{Prefix}.embeddings.token_embedding.weight", [c.VocabularySize, c.Width]);
        yield return ($"{Prefix}.embeddings.position_embedding.weight", [c.ContextLength, c.Width]);
        for (int i = 0; i < c.Layers; i++)
            foreach (var p in ClipTransformer.LayerShapes($"{Prefix}.encoder.layers.{i}", c.Width, c.MlpWidth))
                yield return p;
        yield return ($"{Prefix}.final_layer_norm.weight", [c.Width]);
        yield return ($"{Prefix}.final_layer_norm.bias", [c.Width]);
        yield return (ProjectionName, [projectionDim, c.Width]);
    }

    /// <summary>Projected text embeddings [B, projection] (unnormalised) for token ids [B, L], L ≤ context length.</summary>
    /// <exception cref="ArgumentException">The ids are not [batch, length ≤ context] or hold no end-of-text token.</exception>
    public override Tensor forward(Tensor tokenIds)
    {
        var c = Config;
        if (tokenIds.dim() != 2 || tokenIds.shape[1] > c.ContextLength || tokenIds.shape[1] == 0)
            throw new ArgumentException($"token ids must be [batch, length ≤ {c.ContextLength}]; got [{string.Join(", ", tokenIds.shape)}].", nameof(tokenIds));
        using var scope = NewDisposeScope();
        var weights = new PlainClipWeights(named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter));
        var ids = tokenIds.to(int64);
        long b = ids.shape[0], length = ids.shape[1];
        var x = weights.Get($"{Prefix}.embeddings.token_embedding.weight").index_select(0, ids.flatten()).view(b, length, c.Width)
                + weights.Get($"{Prefix}.embeddings.position_embedding.weight").narrow(0, 0, length);
        for (int i = 0; i < c.Layers; i++)
            x = ClipTransformer.Layer(weights, $"{Prefix}.encoder.layers.{i}", x, c.Heads, c.Activation, c.LayerNormEps, causal: true);
        x = ClipTransformer.LayerNorm(weights, $"{Prefix}.final_layer_norm", x, c.LayerNormEps);
        var isEnd = ids.eq(c.EndOfTextTokenId);
        if (!isEnd.any(1).all().item<bool>())
            throw new ArgumentException($"every row of token ids must hold the end-of-text token {c.EndOfTextTokenId}.", nameof(tokenIds));
        // The first end-of-text position (argmax returns the first maximum).
        var position = isEnd.to(int32).argmax(1);
        var pooled = x[arange(b, device: x.device), position];
        return weights.Linear(pooled, "text_projection", bias: false).MoveToOuterDisposeScope();
    }
}
