using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Models;

/// <summary>What the CLIP vision tower gives for a batch of images.</summary>
/// <param name="Pooled">The post-LayerNorm class token [B, width] (Hugging Face's <c>pooler_output</c>).</param>
/// <param name="ImageEmbeds">The unnormalised projected embedding [B, projection] (<c>image_embeds</c>).</param>
public sealed record ClipVisionOutput(Tensor Pooled, Tensor ImageEmbeds) : IDisposable
{
    /// <inheritdoc />
    public void Dispose()
    {
        Pooled.Dispose();
        ImageEmbeds.Dispose();
    }
}

/// <summary>
/// The CLIP vision transformer (SPEC section 3): patch embedding, class token, learned positions,
/// <c>pre_layrnorm</c>, pre-LayerNorm residual blocks, post-LayerNorm on the class token, projection.
/// Parameters carry their Hugging Face names (<c>vision_model.…</c>, <c>visual_projection.weight</c>),
/// so <c>state_dict()</c> reads
/// and writes Hugging Face checkpoints directly.
/// </summary>
public sealed class ClipVisionTransformer : nn.Module<Tensor, Tensor>
{
    /// <summary>The name prefix of the tower's parameters.</summary>
    public const string Prefix = "vision_model";

    /// <summary>The projection to the joint embedding.</summary>
    public const string ProjectionName = "visual_projection.weight";

    /// <summary>Creates the tower with zero weights (load or initialise them afterwards).</summary>
    public ClipVisionTransformer(ClipVisionConfig config, int projectionDim) : base(nameof(ClipVisionTransformer))
    {
        Config = config;
        ProjectionDim = projectionDim;
        foreach (var (name, shape) in ParameterShapes(config, projectionDim))
            register_parameter(name, nn.Parameter(zeros(shape)));
    }

    /// <summary>The tower's shape.</summary>
    public ClipVisionConfig Config { get; }

    /// <summary>Width of the projected embedding.</summary>
    public int ProjectionDim { get; }

    /// <summary>Names and shapes of every parameter, in Hugging Face naming.</summary>
    public static IEnumerable<(string Name, long[] Shape)> ParameterShapes(ClipVisionConfig c, int projectionDim)
    {
        yield return ($"{Prefix}.embeddings.class_embedding", [c.Width]);
        yield return ($"{Prefix}.embeddings.patch_embedding.weight", [c.Width, 3, c.PatchSize, c.PatchSize]);
        yield return ($"{Prefix}.embeddings.position_embedding.weight", [c.Tokens, c.Width]);
        yield return ($"{Prefix}.pre_layrnorm.weight", [c.Width]);
        yield return ($"{Prefix}.pre_layrnorm.bias", [c.Width]);
        for (int i = 0; i < c.Layers; i++)
            foreach (var p in ClipTransformer.LayerShapes($"{Prefix}.encoder.layers.{i}", c.Width, c.MlpWidth))
                yield return p;
        yield return ($"{Prefix}.post_layernorm.weight", [c.Width]);
        yield return ($"{Prefix}.post_layernorm.bias", [c.Width]);
        yield return (ProjectionName, [projectionDim, c.Width]);
    }

    /// <summary>The tower's own parameters as a weight source.</summary>
    public ClipWeights OwnWeights() => new PlainClipWeights(named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter));

    /// <summary>Projected image embeddings [B, projection] for pixels [B, 3, H, W] (preprocessed).</summary>
    public override Tensor forward(Tensor pixels)
    {
        using var output = Encode(pixels, OwnWeights());
        return output.ImageEmbeds.alias();
    }

    /// <summary>Runs the tower on <paramref name="pixels"/> [B, 3, H, W] with weights from <paramref name="weights"/>.</summary>
    /// <exception cref="ArgumentException">The pixels do not have the configured shape.</exception>
    public ClipVisionOutput Encode(Tensor pixels, ClipWeights weights) => Encode(Config, pixels, weights);

    /// <summary>Runs a vision tower of shape <paramref name="c"/> with weights from <paramref name="weights"/>.</summary>
    public static ClipVisionOutput Encode(ClipVisionConfig c, Tensor pixels, ClipWeights weights)
    {
        if (pixels.dim() != 4 || pixels.shape[1] != 3 || pixels.shape[2] != c.ImageSize || pixels.shape[3] != c.ImageSize)
            throw new ArgumentException(
                $"pixel_values must be [batch, 3, {c.ImageSize}, {c.ImageSize}]; got [{string.Join(", ", pixels.shape)}].", nameof(pixels));
        using var scope = NewDisposeScope();
        long b = pixels.shape[0];
        int g = c.GridSize, p = c.PatchSize;
        // A stride-P convolution is a linear map of each patch's (channel, row, column) values.
        var patches = pixels.view(b, 3, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, 3 * p * p);
        var x = weights.Linear(patches, $"{Prefix}.embeddings.patch_embedding", bias: false);
        var cls = weights.Get($"{Prefix}.embeddings.class_embedding");
        cls = (cls.dim() == 1 ? cls.expand(b, c.Width) : cls).unsqueeze(1);
        x = cat([cls, x], 1) + weights.Get($"{Prefix}.embeddings.position_embedding.weight");
        x = ClipTransformer.LayerNorm(weights, $"{Prefix}.pre_layrnorm", x, c.LayerNormEps);
        for (int i = 0; i < c.Layers; i++)
            x = ClipTransformer.Layer(weights, $"{Prefix}.encoder.layers.{i}", x, c.Heads, c.Activation, c.LayerNormEps, causal: false);
        var pooled = ClipTransformer.LayerNorm(weights, $"{Prefix}.post_layernorm", x.select(1, 0), c.LayerNormEps);
        var embeds = weights.Linear(pooled, "visual_projection", bias: false);
        return new ClipVisionOutput(pooled.MoveToOuterDisposeScope(), embeds.MoveToOuterDisposeScope());
    }
}
