using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Tests.Models;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Heads;

/// <summary>Shared pieces of the head tests.</summary>
internal static class HeadTestHelpers
{
    /// <summary>
    /// The tiny CLIP of <see cref="TinyClip"/> with a text tower that fits the test BPE vocabulary
    /// (528 ids, end of text 527) and a 16-token context.
    /// </summary>
    public static ClipConfig TinyClipForTestVocabulary()
    {
        var config = TinyClip.Config();
        return config with { Text = config.Text! with { VocabularySize = 528, EndOfTextTokenId = 527, ContextLength = 16 } };
    }

    /// <summary>Values of a float tensor, row-major, as doubles.</summary>
    public static double[] Values(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().to(ScalarType.Float64, CPU).contiguous().data<double>().ToArray();
    }

    /// <summary>Collects progress reports synchronously (<see cref="Progress{T}"/> would post them later).</summary>
    public sealed class ListProgress : IProgress<double>
    {
        public List<double> Reports { get; } = [];

        public void Report(double value) => Reports.Add(value);
    }
}
