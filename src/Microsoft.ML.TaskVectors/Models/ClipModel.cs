using TorchSharp;
using Microsoft.ML.TaskVectors.Checkpoints;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Models;

/// <summary>
/// A CLIP model: the vision tower, the optional text tower and the logit scale, loaded from a Hugging
/// Face or open_clip model folder. F16/BF16 checkpoints are computed in float32.
/// </summary>
public sealed class ClipModel : IDisposable
{
    /// <summary>The name of the learned temperature (stored as its logarithm).</summary>
    public const string LogitScaleName = "logit_scale";

    /// <summary>CLIP's initial temperature, ln(1/0.07), used when a checkpoint has none.</summary>
    public static readonly double DefaultLogitScale = Math.Log(1 / 0.07);

    private ClipModel(ClipConfig config, bool withText)
    {
        Config = config;
        Vision = new ClipVisionTransformer(config.Vision, config.ProjectionDim);
        if (withText && config.Text is { } text) Text = new ClipTextTransformer(text, config.ProjectionDim);
        LogitScale = nn.Parameter(tensor((float)DefaultLogitScale));
    }

    /// <summary>The configuration.</summary>
    public ClipConfig Config { get; }

    /// <summary>The vision tower.</summary>
    public ClipVisionTransformer Vision { get; }

    /// <summary>The text tower, or null when not loaded or absent.</summary>
    public ClipTextTransformer? Text { get; }

    /// <summary>ln of the logit scale (a scalar).</summary>
    public TorchSharp.Modules.Parameter LogitScale { get; private set; }

    /// <summary>The device holding the weights.</summary>
    public Device Device => LogitScale.device;

    /// <summary>Every tensor by Hugging Face name (the module parameters themselves, not copies).</summary>
    public IReadOnlyDictionary<string, Tensor> Tensors()
    {
        var all = Vision.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter, StringComparer.Ordinal);
        if (Text is not null)
            foreach (var (name, p) in Text.named_parameters()) all[name] = p;
        all[LogitScaleName] = LogitScale;
        return all;
    }

    /// <summary>
    /// Loads a model folder (Hugging Face <c>config.json</c> + <c>model.safetensors</c> or shards, or
    /// open_clip's <c>open_clip_config.json</c> + <c>open_clip_model.safetensors</c>).
    /// </summary>
    /// <param name="folder">The model folder.</param>
    /// <param name="device">Where to put the weights (CPU when null).</param>
    /// <param name="loadText">Whether to load the text tower (needed for zero-shot heads).</param>
    /// <exception cref="FileNotFoundException">The folder has no configuration or checkpoint.</exception>
    /// <exception cref="InvalidDataException">Tensors are missing or have the wrong shape; every one is listed.</exception>
    public static ClipModel Load(string folder, Device? device = null, bool loadText = true)
    {
        var config = ClipConfig.FromFolder(folder);
        using var checkpoint = ClipCheckpoint.Open(folder);
        var model = new ClipModel(config, loadText && config.Text is not null && checkpoint.Contains($"{ClipTextTransformer.Prefix}.embeddings.token_embedding.weight"));
        try
        {
            model.LoadTensors(checkpoint);
            if (device is not null) model.To(device);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    private void LoadTensors(Checkpoint checkpoint)
    {
        var problems = new List<string>();
        using (no_grad())
        {
            foreach (var (name, target) in Tensors())
            {
                if (name == LogitScaleName && !checkpoint.Contains(name)) continue;
                if (!checkpoint.Contains(name))
                {
                    problems.Add($"'{name}' is missing");
                    continue;
                }
                var info = checkpoint.GetInfo(name);
                if (!info.Shape.AsSpan().SequenceEqual(target.shape))
                {
                    problems.Add($"'{name}' has shape {info.ShapeText}, the configuration needs [{string.Join(", ", target.shape)}]");
                    continue;
                }
                using var value = checkpoint.ReadFloat32(name);
                target.copy_(value);
            }
        }
        if (problems.Count > 0)
            throw new InvalidDataException($"{checkpoint.Location} does not fit its configuration:\n  " + string.Join("\n  ", problems));
    }

    /// <summary>
    /// A model with random weights in CLIP's initialisation (normal, std 0.02 for embeddings and
    /// width^-0.5 scaled projections; LayerNorms at 1 and 0), reproducible from <paramref name="seed"/>.
    /// Tests, demos and benchmarks use it.
    /// </summary>
    public static ClipModel CreateRandom(ClipConfig config, long seed, bool withText = true)
    {
        config.Validate();
        var model = new ClipModel(config, withText);
        using var generator = new Generator((ulong)seed);
        using (no_grad())
        {
            foreach (var (name, p) in model.Tensors())
            {
                if (name == LogitScaleName) continue;
                if (name.Contains("layer_norm") || name.Contains("layrnorm") || name.Contains("layernorm"))
                    p.fill_(name.EndsWith(".weight", StringComparison.Ordinal) ? 1 : 0);
                else if (name.EndsWith(".bias", StringComparison.Ordinal))
                    p.normal_(0, 0.02, generator);
                else
                {
                    var fanIn = p.dim() >= 2 ? p.shape[1..].Aggregate(1L, (a, d) => a * d) : p.shape[0];
                    p.normal_(0, name.Contains("embedding") ? 0.02 : 1 / Math.Sqrt(fanIn), generator);
                }
            }
        }
        return model;
    }

    /// <summary>
    /// Writes the model as a folder: <c>config.json</c> + <c>model.safetensors</c> (Hugging Face) or
    /// <c>open_clip_config.json</c> + <c>open_clip_model.safetensors</c> (open_clip), in
    /// <paramref name="dtype"/> (F32, F16 or BF16).
    /// </summary>
    public void Save(string folder, ClipNaming naming = ClipNaming.HuggingFace, TensorDType dtype = TensorDType.F32)
    {
        if (!dtype.IsFloatingPoint()) throw new ArgumentException($"Weights are stored as F32, F16 or BF16, not {dtype.ToSafetensorsName()}.", nameof(dtype));
        Directory.CreateDirectory(folder);
        using var scope = NewDisposeScope();
        var tensors = Tensors().ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu().to(dtype.ToScalarType()!.Value));
        if (naming == ClipNaming.OpenClip)
        {
            AtomicFile.WriteAllText(Path.Combine(folder, ClipConfig.OpenClipConfigFile), Config.ToOpenClipJson());
            SafetensorsWriter.Save(Path.Combine(folder, "open_clip_model.safetensors"), ClipCheckpoint.ToOpenClipNames(tensors));
        }
        else
        {
            AtomicFile.WriteAllText(Path.Combine(folder, ClipConfig.HuggingFaceConfigFile), Config.ToHuggingFaceJson());
            SafetensorsWriter.Save(Path.Combine(folder, "model.safetensors"), tensors);
        }
    }

    /// <summary>Moves the weights to <paramref name="device"/>.</summary>
    public void To(Device device)
    {
        Vision.to(device);
        Text?.to(device);
        using (no_grad())
        {
            var moved = LogitScale.to(device);
            if (!ReferenceEquals(moved, LogitScale)) LogitScale = nn.Parameter(moved.detach());
        }
    }

    /// <summary>Unnormalised image embeddings [B, projection] for preprocessed pixels [B, 3, H, W].</summary>
    public Tensor EncodeImage(Tensor pixels) => Vision.forward(pixels);

    /// <summary>Unnormalised text embeddings [B, projection] for token ids [B, L].</summary>
    /// <exception cref="InvalidOperationException">The model was loaded without its text tower.</exception>
    public Tensor EncodeText(Tensor tokenIds) =>
        (Text ?? throw new InvalidOperationException("This CLIP model has no text tower loaded; load it with loadText: true from a checkpoint that has one.")).forward(tokenIds);

    /// <inheritdoc />
    public void Dispose()
    {
        Vision.Dispose();
        Text?.Dispose();
        LogitScale.Dispose();
    }
}
