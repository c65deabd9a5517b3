using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Trainers.Variational;

/// <summary>Small conversions the variational tests share.</summary>
internal static class VariationalTestHelpers
{
    /// <summary>A tensor's values in row-major order as doubles.</summary>
    public static double[] Values(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().cpu().to(ScalarType.Float64).contiguous().data<double>().ToArray();
    }

    /// <summary>A scalar tensor as a double.</summary>
    public static double Scalar(Tensor t) => Values(t).Single();

    public static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));
}
