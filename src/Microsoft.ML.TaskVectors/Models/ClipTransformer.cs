using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Microsoft.ML.TaskVectors.Models;

/// <summary>
/// The pieces of a CLIP transformer as functions of their weights, shared by the vision and text towers
/// and by every weight source (plain, merged, composed per task or per sample).
/// </summary>
internal static class ClipTransformer
{
    /// <summary>Hugging Face names and shapes of one residual block's tensors.</summary>
    public static IEnumerable<(string Name, long[] Shape)> LayerShapes(string prefix, int width, int mlpWidth)
    {
        foreach (var ln in new[] { "layer_norm1", "layer_norm2" })
        {
            yield return ($"{prefix}.{ln}.weight", [width]);
            yield return ($"{prefix}.{ln}.bias", [width]);
        }
        foreach (var proj in new[] { "q_proj", "k_proj", "v_proj", "out_proj" })
        {
            yield return ($"{prefix}.self_attn.{proj}.weight", [width, width]);
            yield return ($"{prefix}.self_attn.{proj}.bias", [width]);
        }
        yield return ($"{prefix}.mlp.fc1.weight", [mlpWidth, width]);
        yield return ($"{prefix}.mlp.fc1.bias", [mlpWidth]);
        yield return ($"{prefix}.mlp.fc2.weight", [width, mlpWidth]);
        yield return ($"{prefix}.mlp.fc2.bias", [width]);
    }

    /// <summary>LayerNorm over the last dimension with a shared ([W]) or per-sample ([B, W]) affine.</summary>
    public static Tensor LayerNorm(ClipWeights weights, string prefix, Tensor x, double eps)
    {
        var gamma = weights.Get(prefix + ".weight");
        var beta = weights.Get(prefix + ".bias");
        long width = x.shape[^1];
        if (gamma.dim() == 1 && beta.dim() == 1) return F.layer_norm(x, [width], gamma, beta, eps);
        var normalised = F.layer_norm(x, [width], null, null, eps);
        return normalised * PerSample(gamma, x) + PerSample(beta, x);
    }

    /// <summary>Reshapes a per-sample [B, …] tensor to broadcast against <paramref name="x"/> [B, T, W].</summary>
    public static Tensor PerSample(Tensor t, Tensor x) =>
        t.dim() == 1 || x.dim() == t.dim() ? t : t.unsqueeze(1);

    public static Tensor Activation(Tensor x, ClipActivation activation) =>
        activation == ClipActivation.QuickGelu ? x * F.sigmoid(1.702 * x) : F.gelu(x);

    /// <summary>One pre-LayerNorm residual block: attention then MLP.</summary>
    public static Tensor Layer(ClipWeights weights, string prefix, Tensor x, int heads, ClipActivation activation, double eps, bool causal)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1], w = x.shape[2];
        var h = LayerNorm(weights, prefix + ".layer_norm1", x, eps);
        Tensor Heads(string proj) => weights.Linear(h, $"{prefix}.self_attn.{proj}", bias: true).view(b, t, heads, w / heads).transpose(1, 2);
        var attended = F.scaled_dot_product_attention(Heads("q_proj"), Heads("k_proj"), Heads("v_proj"), is_casual: causal);
        x = x + weights.Linear(attended.transpose(1, 2).reshape(b, t, w), prefix + ".self_attn.out_proj", bias: true);
        h = LayerNorm(weights, prefix + ".layer_norm2", x, eps);
        h = Activation(weights.Linear(h, prefix + ".mlp.fc1", bias: true), activation);
        x = x + weights.Linear(h, prefix + ".mlp.fc2", bias: true);
        return x.MoveToOuterDisposeScope();
    }
}
