using Microsoft.ML.TaskVectors.Checkpoints;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests;

/// <summary>Small random CLIP-like checkpoints for tests: a base and fine-tuned copies of it.</summary>
internal static class RandomCheckpoints
{
    public static readonly (string Name, long[] Shape)[] Layout =
    [
        ("vision_model.embeddings.class_embedding", [8]),
        ("vision_model.embeddings.position_ids", [1, 5]),
        ("vision_model.encoder.layers.0.mlp.fc1.weight", [16, 8]),
        ("vision_model.encoder.layers.0.mlp.fc1.bias", [16]),
        ("vision_model.encoder.layers.1.self_attn.q_proj.weight", [8, 8]),
        ("vision_model.post_layernorm.weight", [8]),
        ("text_model.final_layer_norm.weight", [8]),
    ];

    /// <summary>Writes base.safetensors and ft{i}.safetensors (base + small noise) and returns their paths.</summary>
    /// <param name="layout">The tensors; <see cref="Layout"/> when null.</param>
    public static (string Base, string[] Finetuned) Write(TempDirectory dir, int tasks, ScalarType dtype = ScalarType.Float32, long seed = 1,
        IReadOnlyList<(string Name, long[] Shape)>? layout = null)
    {
        using var g = new Generator((ulong)seed);
        var baseTensors = (layout ?? Layout).ToDictionary(l => l.Name,
            l => l.Name.EndsWith("position_ids") ? arange(l.Shape[1]).reshape(l.Shape) : randn(l.Shape, generator: g).to(dtype));
        var basePath = dir.File("base.safetensors");
        SafetensorsWriter.Save(basePath, baseTensors);
        var finetuned = new string[tasks];
        for (int t = 0; t < tasks; t++)
        {
            var ft = baseTensors.ToDictionary(kv => kv.Key,
                kv => kv.Value.is_floating_point() ? (kv.Value.to(ScalarType.Float32) + 0.1 * randn(kv.Value.shape, generator: g)).to(dtype) : kv.Value);
            finetuned[t] = dir.File($"ft{t}.safetensors");
            SafetensorsWriter.Save(finetuned[t], ft);
            foreach (var v in ft.Values.Where(v => !baseTensors.ContainsValue(v))) v.Dispose();
        }
        foreach (var v in baseTensors.Values) v.Dispose();
        return (basePath, finetuned);
    }
}
