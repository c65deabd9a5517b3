using System.Text.RegularExpressions;
using Microsoft.ML.TaskVectors.Checkpoints;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Models;

/// <summary>The tensor naming a CLIP checkpoint uses.</summary>
public enum ClipNaming
{
    /// <summary>Hugging Face <c>CLIPModel</c> names (<c>vision_model.encoder.layers.N.self_attn.q_proj.weight</c>, …).</summary>
    HuggingFace,

    /// <summary>OpenAI/open_clip names (<c>visual.transformer.resblocks.N.attn.in_proj_weight</c>, …).</summary>
    OpenClip,
}

/// <summary>
/// A CLIP checkpoint seen through Hugging Face names, whatever its stored naming. open_clip's fused
/// <c>in_proj</c> tensors appear as separate q/k/v rows and its <c>[in, out]</c> projections
/// (<c>visual.proj</c>, <c>text_projection</c>) as the transposed <c>[out, in]</c> weights, so models,
/// task vectors and exports only ever deal with one naming.
/// </summary>
public sealed partial class ClipCheckpoint : Checkpoint
{
    private readonly Checkpoint _inner;
    private readonly Dictionary<string, Source> _sources;
    private readonly TensorInfo[] _tensors;

    private enum Transform { None, Transpose, Rows }

    private sealed record Source(string Name, Transform Transform, int Part = 0);

    private ClipCheckpoint(Checkpoint inner, ClipNaming naming)
    {
        _inner = inner;
        Naming = naming;
        _sources = new Dictionary<string, Source>(StringComparer.Ordinal);
        var tensors = new List<TensorInfo>();
        foreach (var info in inner.Tensors)
        {
            if (naming == ClipNaming.HuggingFace)
            {
                _sources[info.Name] = new Source(info.Name, Transform.None);
                tensors.Add(info);
                continue;
            }
            foreach (var (name, source, shape) in FromOpenClip(info, inner.Location))
            {
                _sources[name] = source;
                tensors.Add(new TensorInfo(name, info.DType, shape));
            }
        }
        _tensors = tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToArray();
    }

    /// <summary>The naming of the underlying checkpoint.</summary>
    public ClipNaming Naming { get; }

    /// <inheritdoc />
    public override string Location => _inner.Location;

    /// <inheritdoc />
    public override IReadOnlyList<TensorInfo> Tensors => _tensors;

    /// <inheritdoc />
    public override IReadOnlyDictionary<string, string> Metadata => _inner.Metadata;

    /// <summary>Wraps an open checkpoint (which the view then owns), detecting its naming.</summary>
    public static ClipCheckpoint Wrap(Checkpoint checkpoint) =>
        new(checkpoint, checkpoint.Contains("visual.conv1.weight") || checkpoint.Contains("visual.class_embedding")
            ? ClipNaming.OpenClip
            : ClipNaming.HuggingFace);

    /// <summary>Opens a model folder, a safetensors file or a sharded index (see <see cref="Checkpoint.Open"/>).</summary>
    public static new ClipCheckpoint Open(string path) => Wrap(Checkpoint.Open(path));

    /// <inheritdoc />
    protected override Tensor ReadCore(TensorInfo info)
    {
        var source = _sources[info.Name];
        var raw = _inner.Read(source.Name);
        if (source.Transform == Transform.None) return raw;
        using (raw)
            return source.Transform == Transform.Transpose
                ? raw.t().contiguous()
                : raw.narrow(0, source.Part * (raw.shape[0] / 3), raw.shape[0] / 3).clone();
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) _inner.Dispose();
    }

    /// <summary>
    /// Tensors in Hugging Face names renamed to OpenAI/open_clip names: q/k/v fused into
    /// <c>in_proj_*</c>, projections transposed to <c>[in, out]</c>. The inverse of the view.
    /// </summary>
    public static Dictionary<string, Tensor> ToOpenClipNames(IReadOnlyDictionary<string, Tensor> huggingFace)
    {
        var inverse = TopLevel.ToDictionary(kv => kv.Value, kv => kv.Key, StringComparer.Ordinal);
        var blockInverse = BlockParts.ToDictionary(kv => kv.Value, kv => kv.Key, StringComparer.Ordinal);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, t) in huggingFace)
        {
            if (inverse.TryGetValue(name, out var oc)) result[oc] = t;
            else if (name == "visual_projection.weight") result["visual.proj"] = t.t().contiguous();
            else if (name == "text_projection.weight") result["text_projection"] = t.t().contiguous();
            else if (HuggingFaceLayerName().Match(name) is { Success: true } m)
            {
                var prefix = (m.Groups[1].Value == "vision_model" ? "visual." : "") + "transformer.resblocks." + m.Groups[2].Value + ".";
                var part = m.Groups[3].Value;
                if (part.StartsWith("self_attn.q_proj.", StringComparison.Ordinal))
                {
                    var suffix = part.EndsWith("weight", StringComparison.Ordinal) ? "weight" : "bias";
                    var layer = name[..name.IndexOf(".self_attn.", StringComparison.Ordinal)] + ".self_attn.";
                    result[prefix + "attn.in_proj_" + suffix] = cat(
                        [t, huggingFace[layer + "k_proj." + suffix], huggingFace[layer + "v_proj." + suffix]], 0);
                }
                else if (!part.StartsWith("self_attn.k_proj.", StringComparison.Ordinal) && !part.StartsWith("self_attn.v_proj.", StringComparison.Ordinal))
                    result[prefix + (blockInverse.TryGetValue(part, out var b) ? b : part)] = t;
            }
            else result[name] = t;
        }
        return result;
    }

    [GeneratedRegex(@"^(vision_model|text_model)\.encoder\.layers\.(\d+)\.(.+)$")]
    private static partial Regex HuggingFaceLayerName();

    [GeneratedRegex(@"^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$")]
    private static partial Regex ResblockName();

    private static readonly Dictionary<string, string> BlockParts = new(StringComparer.Ordinal)
    {
        ["ln_1.weight"] = "layer_norm1.weight",
        ["ln_1.bias"] = "layer_norm1.bias",
        ["ln_2.weight"] = "layer_norm2.weight",
        ["ln_2.bias"] = "layer_norm2.bias",
        ["attn.out_proj.weight"] = "self_attn.out_proj.weight",
        ["attn.out_proj.bias"] = "self_attn.out_proj.bias",
        ["mlp.c_fc.weight"] = "mlp.fc1.weight",
        ["mlp.c_fc.bias"] = "mlp.fc1.bias",
        ["mlp.c_proj.weight"] = "mlp.fc2.weight",
        ["mlp.c_proj.bias"] = "mlp.fc2.bias",
    };

    private static readonly Dictionary<string, string> TopLevel = new(StringComparer.Ordinal)
    {
        ["visual.class_embedding"] = "vision_model.embeddings.class_embedding",
        ["visual.positional_embedding"] = "vision_model.embeddings.position_embedding.weight",
        ["visual.conv1.weight"] = "vision_model.embeddings.patch_embedding.weight",
        ["visual.ln_pre.weight"] = "vision_model.pre_layrnorm.weight",
        ["visual.ln_pre.bias"] = "vision_model.pre_layrnorm.bias",
        ["visual.ln_post.weight"] = "vision_model.post_layernorm.weight",
        ["visual.ln_post.bias"] = "vision_model.post_layernorm.bias",
        ["token_embedding.weight"] = "text_model.embeddings.token_embedding.weight",
        ["positional_embedding"] = "text_model.embeddings.position_embedding.weight",
        ["ln_final.weight"] = "text_model.final_layer_norm.weight",
        ["ln_final.bias"] = "text_model.final_layer_norm.bias",
        ["logit_scale"] = "logit_scale",
    };

    private static IEnumerable<(string Name, Source Source, long[] Shape)> FromOpenClip(TensorInfo info, string location)
    {
        var name = info.Name;
        if (TopLevel.TryGetValue(name, out var mapped))
        {
            yield return (mapped, new Source(name, Transform.None), info.Shape);
            yield break;
        }
        if (name is "visual.proj" or "text_projection" && info.Shape.Length == 2)
        {
            var target = name == "visual.proj" ? "visual_projection.weight" : "text_projection.weight";
            yield return (target, new Source(name, Transform.Transpose), [info.Shape[1], info.Shape[0]]);
            yield break;
        }
        var m = ResblockName().Match(name);
        if (!m.Success)
        {
            // Not part of a CLIP tower we know (an attention-pool head, a buffer): keep it under its own name.
            yield return (name, new Source(name, Transform.None), info.Shape);
            yield break;
        }
        var prefix = (m.Groups[1].Success ? "vision_model" : "text_model") + ".encoder.layers." + m.Groups[2].Value + ".";
        var part = m.Groups[3].Value;
        if (part is "attn.in_proj_weight" or "attn.in_proj_bias")
        {
            if (info.Shape.Length == 0 || info.Shape[0] % 3 != 0)
                throw new CheckpointFormatException(location, $"tensor '{name}': a fused q/k/v tensor must have a first dimension divisible by 3, found {info.ShapeText}.");
            var suffix = part.EndsWith("weight", StringComparison.Ordinal) ? "weight" : "bias";
            var shape = (long[])info.Shape.Clone();
            shape[0] /= 3;
            string[] heads = ["q_proj", "k_proj", "v_proj"];
            for (int i = 0; i < 3; i++)
                yield return (prefix + "self_attn." + heads[i] + "." + suffix, new Source(name, Transform.Rows, i), shape);
            yield break;
        }
        yield return (BlockParts.TryGetValue(part, out var hf) ? prefix + hf : name, new Source(name, Transform.None), info.Shape);
    }
}
