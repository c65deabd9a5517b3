using Microsoft.ML.TaskVectors.Merging;
using Microsoft.ML.TaskVectors.TaskVectors;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Merging;

/// <summary>Merging streams: no method leaves tensors alive once its results are disposed.</summary>
public class MergeResourceTests
{
    private static IEnumerable<string> Methods => MergeMethods.Names;

    [TestCaseSource(nameof(Methods))]
    public void MergingEveryTensorLeavesNoLiveTensorBehind(string method)
    {
        using var g = new Generator(11);
        var tasks = Enumerable.Range(0, 3).Select(_ => (IReadOnlyDictionary<string, Tensor>)new Dictionary<string, Tensor>
        {
            ["a.weight"] = randn([12, 6], generator: g),
            ["a.bias"] = randn([12], generator: g),
            ["b.weight"] = randn([6, 12], generator: g),
        }).ToArray();
        using var set = new InMemoryTaskVectorSet(["t0", "t1", "t2"], tasks);
        foreach (var t in tasks.SelectMany(d => d.Values)) t.Dispose();

        var merge = MergeMethods.Create(method, new MergeMethodOptions { Seed = 1 });
        merge.Prepare(set);
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int round = 0; round < 3; round++)
            foreach (var name in set.TensorNames)
                merge.MergeTensor(name, set).Dispose();
        Assert.That(DisposeScopeManager.Statistics.ThreadTotalLiveCount, Is.EqualTo(before), $"{method} leaked tensors");
    }
}
