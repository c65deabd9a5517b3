using Microsoft.ML.TaskVectors.TaskVectors;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Tests.Merging;

/// <summary>Small helpers to build task-vector sets from literal numbers and read results back.</summary>
internal static class MergeTestData
{
    /// <summary>A set whose tasks each hold one 1-D tensor <paramref name="tensorName"/>.</summary>
    public static InMemoryTaskVectorSet OneTensor(string tensorName, params float[][] tasks) =>
        MakeSet(tasks.Select(v => new Dictionary<string, torch.Tensor> { [tensorName] = torch.tensor(v) }).ToArray());

    /// <summary>A set with tasks named task0, task1, … built from per-task dictionaries (the input tensors are disposed).</summary>
    public static InMemoryTaskVectorSet MakeSet(params Dictionary<string, torch.Tensor>[] tasks)
    {
        try
        {
            return new InMemoryTaskVectorSet(
                tasks.Select((_, i) => $"task{i}").ToArray(),
                tasks.Select(d => (IReadOnlyDictionary<string, torch.Tensor>)d).ToArray());
        }
        finally
        {
            foreach (var tensor in tasks.SelectMany(d => d.Values))
            {
                tensor.Dispose();
            }
        }
    }

    public static torch.Tensor Matrix(long rows, long cols, params float[] values) =>
        torch.tensor(values, new[] { rows, cols });

    public static float[] Values(torch.Tensor tensor) => tensor.contiguous().data<float>().ToArray();

    /// <summary>Runs Prepare then MergeTensor for one tensor and returns its values.</summary>
    public static float[] Merge(Microsoft.ML.TaskVectors.Merging.MergeMethod method, ITaskVectorSet set, string tensorName)
    {
        method.Prepare(set);
        using var merged = method.MergeTensor(tensorName, set);
        Assert.That(merged.dtype, Is.EqualTo(torch.ScalarType.Float32));
        Assert.That(merged.shape, Is.EqualTo(set.GetShape(tensorName)));
        return Values(merged);
    }
}
