using Microsoft.ML.TaskVectors.Merging;
using Microsoft.ML.TaskVectors.Runtime;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Tests.Merging;

public class MergeMethodsFactoryTests
{
    [Test]
    public void Create_UsesEachMethodsOwnDefaultLambda_WhenLambdaIsNull()
    {
        var options = new MergeMethodOptions();
        Assert.That(((TaskArithmetic)MergeMethods.Create("task-arithmetic", options)).Lambda, Is.EqualTo(0.3));
        Assert.That(((TiesMerging)MergeMethods.Create("ties", options)).Lambda, Is.EqualTo(1.0));
        Assert.That(((TaskNegation)MergeMethods.Create("negate", options)).Lambda, Is.EqualTo(1.0));
        var dareTa = (DareMerging)MergeMethods.Create("dare-ta", options);
        Assert.That(((TaskArithmetic)dareTa.Inner).Lambda, Is.EqualTo(0.3));
        Assert.That(dareTa.P, Is.EqualTo(0.5));
    }

    [Test]
    public void Create_PassesOptions()
    {
        var options = new MergeMethodOptions
        {
            Lambda = 0.7, K = 0.1, Ranking = TiesRanking.PerTensor, Aggregation = TiesAggregation.DisjointSum,
            P = 0.9, Seed = 42, Alpha = 0.25,
        };
        var dareTies = (DareMerging)MergeMethods.Create("DARE-TIES", options);
        Assert.That(dareTies.Name, Is.EqualTo("dare-ties"));
        Assert.That((dareTies.P, dareTies.Seed), Is.EqualTo((0.9, 42L)));
        var ties = (TiesMerging)dareTies.Inner;
        Assert.That((ties.K, ties.Lambda, ties.Ranking, ties.Aggregation), Is.EqualTo((0.1, 0.7, TiesRanking.PerTensor, TiesAggregation.DisjointSum)));
        Assert.That(((TsvMerging)MergeMethods.Create("tsv", options)).Alpha, Is.EqualTo(0.25));
        Assert.That(((TaskArithmetic)MergeMethods.Create("task-arithmetic", options)).Lambda, Is.EqualTo(0.7));
        Assert.That(MergeMethods.Create("average", options), Is.TypeOf<WeightAveraging>());
        Assert.That(MergeMethods.Create("average", null).Name, Is.EqualTo("average"));
    }

    [Test]
    public void Create_PutsTheComputeBoundMethodsOnTheRequestedDevice()
    {
        Assert.That(((TsvMerging)MergeMethods.Create("tsv", new MergeMethodOptions { Device = "cpu" })).Device.type, Is.EqualTo(DeviceType.CPU));
        Assert.That(((WudiMerging)MergeMethods.Create("wudi", new MergeMethodOptions { Device = "CPU", RequireDevice = true })).Device.type, Is.EqualTo(DeviceType.CPU));
        var unknown = Assert.Throws<ArgumentException>(() => MergeMethods.Create("tsv", new MergeMethodOptions { Device = "gpu" }));
        Assert.That(unknown!.Message, Does.Contain("'gpu'"));

        Assume.That(ComputeDevice.IsCudaAvailable(), Is.False, "the rest is about a machine without CUDA");
        Assert.That(((TsvMerging)MergeMethods.Create("tsv", new MergeMethodOptions { Device = "cuda" })).Device.type, Is.EqualTo(DeviceType.CPU),
            "without RequireDevice an unusable CUDA device falls back to the CPU");
        var refused = Assert.Throws<InvalidOperationException>(() => MergeMethods.Create("wudi", new MergeMethodOptions { Device = "cuda:1", RequireDevice = true }));
        Assert.That(refused!.Message, Does.Contain("'cuda:1' cannot be used"));
    }

    [Test]
    public void Create_AcceptsEveryListedName()
    {
        Assert.That(MergeMethods.Names, Is.EqualTo(new[] { "average", "task-arithmetic", "ties", "dare-ta", "dare-ties", "tsv", "wudi", "negate" }));
        foreach (var name in MergeMethods.Names)
        {
            Assert.That(MergeMethods.Create(name, new MergeMethodOptions()), Is.Not.Null, name);
        }
    }

    [Test]
    public void Create_UnknownName_ListsValidNames()
    {
        var ex = Assert.Throws<ArgumentException>(() => MergeMethods.Create("magic", new MergeMethodOptions()));
        Assert.That(ex!.Message, Does.Contain("'magic'"));
        foreach (var name in MergeMethods.Names)
        {
            Assert.That(ex.Message, Does.Contain(name));
        }
    }

    [Test]
    public void Create_InvalidOption_NamesTheOption()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => MergeMethods.Create("ties", new MergeMethodOptions { K = 1.5 }));
        Assert.That(ex!.ParamName, Is.EqualTo("k"));
    }

    private static IEnumerable<TestCaseData> InvalidArguments()
    {
        yield return new TestCaseData(new Action(() => new TiesMerging(k: 0)), "k", "(0, 1]");
        yield return new TestCaseData(new Action(() => new TiesMerging(k: 1.01)), "k", "(0, 1]");
        yield return new TestCaseData(new Action(() => new TiesMerging(k: double.NaN)), "k", "(0, 1]");
        yield return new TestCaseData(new Action(() => new TiesMerging(lambda: -0.1)), "lambda", "[0, +∞)");
        yield return new TestCaseData(new Action(() => new TiesMerging(ranking: (TiesRanking)7)), "ranking", "Global, PerTensor");
        yield return new TestCaseData(new Action(() => new TiesMerging(aggregation: (TiesAggregation)7)), "aggregation", "DisjointMean, DisjointSum");
        yield return new TestCaseData(new Action(() => new TaskArithmetic(double.PositiveInfinity)), "lambda", "[0, +∞)");
        yield return new TestCaseData(new Action(() => new TaskArithmetic(-1)), "lambda", "[0, +∞)");
        yield return new TestCaseData(new Action(() => new TaskNegation(-1)), "lambda", "[0, +∞)");
        yield return new TestCaseData(new Action(() => new TsvMerging(-0.5)), "alpha", "[0, +∞)");
        yield return new TestCaseData(new Action(() => new DareMerging(new TaskArithmetic(), p: 1.0)), "p", "[0, 1)");
        yield return new TestCaseData(new Action(() => new DareMerging(new TaskArithmetic(), p: -0.1)), "p", "[0, 1)");
    }

    [TestCaseSource(nameof(InvalidArguments))]
    public void Constructors_RejectOutOfRangeOptions(Action create, string option, string range)
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(create);
        Assert.That(ex!.ParamName, Is.EqualTo(option));
        Assert.That(ex.Message, Does.Contain($"'{option}'").And.Contain(range));
    }
}
