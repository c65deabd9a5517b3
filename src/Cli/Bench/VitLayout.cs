using Microsoft.ML.TaskVectors.Checkpoints;

namespace Microsoft.ML.TaskVectors.Cli.Bench;

/// <summary>Tensor layouts of CLIP vision towers (Hugging Face names), for benchmarks on random weights.</summary>
internal static class VitLayout
{
    /// <summary>The vision tower of a CLIP ViT with the given size (ViT-B/32: width 768, 12 layers, patch 32, image 224, projection 512).</summary>
    public static IReadOnlyList<TensorInfo> Vision(int width = 768, int layers = 12, int patch = 32, int image = 224, int projection = 512, int mlpRatio = 4)
    {
        var list = new List<TensorInfo>();
        void Add(string name, params long[] shape) => list.Add(new TensorInfo(name, TensorDType.F32, shape));
        int positions = (image / patch) * (image / patch) + 1;
        Add("vision_model.embeddings.class_embedding", width);
        Add("vision_model.embeddings.patch_embedding.weight", width, 3, patch, patch);
        Add("vision_model.embeddings.position_embedding.weight", positions, width);
        Add("vision_model.pre_layrnorm.weight", width);
        Add("vision_model.pre_layrnorm.bias", width);
        for (int l = 0; l < layers; l++)
        {
            var p = $"vision_model.encoder.layers.{l}.";
            foreach (var proj in new[] { "q_proj", "k_proj", "v_proj", "out_proj" })
            {
                Add(p + $"self_attn.{proj}.weight", width, width);
                Add(p + $"self_attn.{proj}.bias", width);
            }
            Add(p + "layer_norm1.weight", width);
            Add(p + "layer_norm1.bias", width);
            Add(p + "mlp.fc1.weight", mlpRatio * width, width);
            Add(p + "mlp.fc1.bias", mlpRatio * width);
            Add(p + "mlp.fc2.weight", width, mlpRatio * width);
            Add(p + "mlp.fc2.bias", width);
            Add(p + "layer_norm2.weight", width);
            Add(p + "layer_norm2.bias", width);
        }
        Add("vision_model.post_layernorm.weight", width);
        Add("vision_model.post_layernorm.bias", width);
        Add("visual_projection.weight", projection, width);
        return list.OrderBy(t => t.Name, StringComparer.Ordinal).ToArray();
    }
}
