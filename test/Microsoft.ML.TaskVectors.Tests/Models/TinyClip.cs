using Microsoft.ML.TaskVectors.Models;

namespace Microsoft.ML.TaskVectors.Tests.Models;

/// <summary>Tiny CLIP shapes for tests.</summary>
public static class TinyClip
{
    public static ClipConfig Config(ClipActivation activation = ClipActivation.QuickGelu) => new(
        new ClipVisionConfig(ImageSize: 16, PatchSize: 8, Width: 16, Layers: 2, Heads: 4, MlpWidth: 32, activation),
        new ClipTextConfig(VocabularySize: 40, ContextLength: 8, Width: 16, Layers: 2, Heads: 2, MlpWidth: 32, activation, EndOfTextTokenId: 39),
        ProjectionDim: 12);
}
