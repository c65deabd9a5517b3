using Microsoft.ML.OnnxRuntime;

namespace Microsoft.ML.TaskVectors.Tests.Onnx;

/// <summary>Runs a model through ONNX Runtime with float inputs and returns every output.</summary>
internal static class OnnxTestRuntime
{
    public sealed record Output(float[] Data, long[] Shape);

    public static Dictionary<string, Output> Run(byte[] model, params (string Name, float[] Data, long[] Shape)[] inputs)
    {
        using var session = new InferenceSession(model);
        return Run(session, inputs);
    }

    public static Dictionary<string, Output> Run(InferenceSession session, params (string Name, float[] Data, long[] Shape)[] inputs)
    {
        var values = inputs.Select(i => OrtValue.CreateTensorValueFromMemory(i.Data, i.Shape)).ToArray();
        try
        {
            var outputNames = session.OutputNames.ToArray();
            using var options = new RunOptions();
            using var results = session.Run(options, inputs.Select(i => i.Name).ToArray(), values, outputNames);
            var outputs = new Dictionary<string, Output>();
            int k = 0;
            foreach (var r in results)
                outputs[outputNames[k++]] = new Output(r.GetTensorDataAsSpan<float>().ToArray(), r.GetTensorTypeAndShape().Shape);
            return outputs;
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }

    /// <summary>Largest absolute difference, relative to the largest absolute expected value.</summary>
    public static double RelativeError(float[] actual, float[] expected)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length));
        double maxDiff = 0, scale = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs((double)actual[i] - expected[i]));
            scale = Math.Max(scale, Math.Abs((double)expected[i]));
        }
        return maxDiff / Math.Max(scale, 1e-30);
    }
}
