using Microsoft.ML.TaskVectors.Trainers.Variational;
using static Microsoft.ML.TaskVectors.Tests.Trainers.Variational.VariationalTestHelpers;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Trainers.Variational;

public class InferenceNetworkTests
{
    [Test]
    public void DefaultWidth_GivesThePapersParameterBudgetForViTB32Sizes()
    {
        // P(h) = h² + (d + 2 + 3K)·h + 3K with d = 512, K = 8·158 = 1264: P(167) = 27,889 + 4,306·167 + 3,792 = 750,783.
        Assert.That(InferenceNetwork.HiddenWidthFor(512, 8, 158), Is.EqualTo(167));
        Assert.That(InferenceNetwork.ParameterCount(512, 167, 8, 158), Is.EqualTo(750_783));
        long Miss(int h) => Math.Abs(InferenceNetwork.ParameterCount(512, h, 8, 158) - 750_000);
        Assert.That(Miss(167), Is.LessThan(Miss(166)).And.LessThan(Miss(168)));

        using var scope = NewDisposeScope();
        using var network = new InferenceNetwork(512, 8, 158);
        Assert.That(network.HiddenWidth, Is.EqualTo(167));
        Assert.That(network.parameters().Sum(p => p.numel()), Is.EqualTo(750_783));
        Assert.That(network.TrainableParameterCount, Is.EqualTo(750_783));
        Assert.That(network.state_dict().Keys, Is.EquivalentTo(new[]
        {
            "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "mean.weight", "mean.bias",
            "log_variance.weight", "log_variance.bias", "inclusion.weight", "inclusion.bias",
        }));
        // A tiny budget still gives a usable network.
        Assert.That(InferenceNetwork.HiddenWidthFor(4, 1, 1, targetParameters: 1), Is.EqualTo(1));
    }

    [Test]
    public void Forward_MatchesTheMlpWrittenOutByHand()
    {
        using var scope = NewDisposeScope();
        using var network = new InferenceNetwork(5, 2, 3, new InferenceNetworkOptions { HiddenWidth = 4, Seed = 3, InitialMean = 0.1 });
        using (no_grad())
        {
            // Give μ's head non-zero weights so every path of the MLP is exercised.
            network.state_dict()["mean.weight"].uniform_(-0.5, 0.5, new Generator(9));
        }
        var x = randn(3, 5, generator: new Generator(4));
        using var output = network.forward(x);
        Assert.That(output.Mean!.shape, Is.EqualTo(new long[] { 3, 2, 3 }));

        var w = network.state_dict().ToDictionary(kv => kv.Key, kv => Values(kv.Value));
        var xs = Values(x);
        double[] Affine(double[] input, int batch, int inWidth, string layer, int outWidth, bool relu)
        {
            var y = new double[batch * outWidth];
            for (int b = 0; b < batch; b++)
                for (int o = 0; o < outWidth; o++)
                {
                    double s = w[layer + ".bias"][o];
                    for (int i = 0; i < inWidth; i++) s += w[layer + ".weight"][o * inWidth + i] * input[b * inWidth + i];
                    y[b * outWidth + o] = relu ? Math.Max(0, s) : s;
                }
            return y;
        }
        var hidden = Affine(Affine(xs, 3, 5, "fc1", 4, true), 3, 4, "fc2", 4, true);
        Assert.That(Values(output.Mean), Is.EqualTo(Affine(hidden, 3, 4, "mean", 6, false)).Within(1e-5));
        Assert.That(Values(output.InclusionLogits!), Is.EqualTo(Affine(hidden, 3, 4, "inclusion", 6, false)).Within(1e-5));
        var logVariance = Affine(hidden, 3, 4, "log_variance", 6, false).Select(v => Math.Clamp(v, -8, 2)).ToArray();
        Assert.That(Values(output.LogVariance!), Is.EqualTo(logVariance).Within(1e-5));
        Assert.That(Values(network.Mean(x)), Is.EqualTo(Values(output.Mean)));
    }

    [Test]
    public void Initialisation_StartsMeanAtTheConfiguredConstantAndEncodesTheOtherBiases()
    {
        using var scope = NewDisposeScope();
        var x = randn(4, 6, generator: new Generator(1)) * 10;
        using var zero = new InferenceNetwork(6, 2, 5, new InferenceNetworkOptions { HiddenWidth = 8 });
        Assert.That(Values(zero.Mean(x)), Is.All.EqualTo(0.0));

        using var constant = new InferenceNetwork(6, 2, 5, new InferenceNetworkOptions
        {
            HiddenWidth = 8, InitialMean = 0.1, InitialLogVariance = -5, InitialInclusionProbability = 0.8,
        });
        Assert.That(Values(constant.Mean(x)), Is.All.EqualTo(0.1).Within(1e-7));
        var state = constant.state_dict();
        Assert.That(Values(state["mean.weight"]), Is.All.EqualTo(0.0));
        Assert.That(Values(state["log_variance.bias"]), Is.All.EqualTo(-5.0));
        Assert.That(Values(state["inclusion.bias"]), Is.All.EqualTo(Math.Log(0.8 / 0.2)).Within(1e-6));
        // The other heads keep random weights in PyTorch's ±1/√fan_in.
        Assert.That(Values(state["inclusion.weight"]).Max(Math.Abs), Is.GreaterThan(0).And.LessThanOrEqualTo(1 / Math.Sqrt(8)));
    }

    [Test]
    public void LogVariance_IsClampedToTheConfiguredRange()
    {
        using var scope = NewDisposeScope();
        using var network = new InferenceNetwork(3, 1, 2, new InferenceNetworkOptions { HiddenWidth = 4 });
        var x = randn(2, 3, generator: new Generator(2));
        using (no_grad()) network.state_dict()["log_variance.bias"].fill_(50);
        using (var high = network.Forward(x, InferenceHeads.LogVariance)) Assert.That(Values(high.LogVariance!), Is.All.EqualTo(2.0));
        using (no_grad()) network.state_dict()["log_variance.bias"].fill_(-50);
        using (var low = network.Forward(x, InferenceHeads.LogVariance)) Assert.That(Values(low.LogVariance!), Is.All.EqualTo(-8.0));
    }

    [Test]
    public void Seed_MakesInitialisationRepeatableAndLeavesTheGlobalGeneratorAlone()
    {
        using var scope = NewDisposeScope();
        var options = new InferenceNetworkOptions { HiddenWidth = 6, Seed = 42 };
        using var a = new InferenceNetwork(4, 2, 3, options);
        using var b = new InferenceNetwork(4, 2, 3, options);
        using var c = new InferenceNetwork(4, 2, 3, new InferenceNetworkOptions { HiddenWidth = 6, Seed = 43 });
        foreach (var (name, value) in a.state_dict())
            Assert.That(value.eq(b.state_dict()[name]).all().item<bool>(), Is.True, name);
        Assert.That(a.state_dict()["fc1.weight"].eq(c.state_dict()["fc1.weight"]).all().item<bool>(), Is.False);
        // Loading a's state into c makes it the same function.
        var x = randn(3, 4, generator: new Generator(6));
        c.load_state_dict(a.state_dict());
        using (var fromA = a.forward(x))
        using (var fromC = c.forward(x))
            Assert.That(fromC.InclusionLogits!.eq(fromA.InclusionLogits!).all().item<bool>(), Is.True);

        random.manual_seed(7);
        var expected = rand(5);
        random.manual_seed(7);
        using (new InferenceNetwork(4, 2, 3, options)) { }
        Assert.That(rand(5).eq(expected).all().item<bool>(), Is.True);
    }

    [Test]
    public void Forward_ComputesOnlyTheRequestedHeads()
    {
        using var scope = NewDisposeScope();
        var x = randn(2, 4, generator: new Generator(5));
        using var network = new InferenceNetwork(4, 2, 3, new InferenceNetworkOptions { HiddenWidth = 5, Heads = InferenceHeads.Mean | InferenceHeads.LogVariance });
        using (var both = network.forward(x))
        {
            Assert.That(both.Mean, Is.Not.Null);
            Assert.That(both.LogVariance, Is.Not.Null);
            Assert.That(both.InclusionLogits, Is.Null);
        }
        using var logits = network.Forward(x, InferenceHeads.InclusionLogits);
        Assert.That((logits.Mean, logits.LogVariance), Is.EqualTo(((Tensor?)null, (Tensor?)null)));
        Assert.That(logits.InclusionLogits!.shape, Is.EqualTo(new long[] { 2, 2, 3 }));
    }

    [Test]
    public void BadInputAndOptions_AreRejectedByName()
    {
        using var scope = NewDisposeScope();
        using var network = new InferenceNetwork(4, 2, 3, new InferenceNetworkOptions { HiddenWidth = 5 });
        Assert.That(Assert.Throws<ArgumentException>(() => network.Mean(ones(2, 5)))!.Message, Does.Contain("[B, 4]").And.Contain("[2, 5]"));
        Assert.That(Assert.Throws<ArgumentException>(() => network.Mean(ones(2, 4, ScalarType.Int64)))!.Message, Does.Contain("floating-point"));
        Assert.That(Assert.Throws<ArgumentException>(() => new InferenceNetwork(4, 2, 3, new InferenceNetworkOptions { InitialInclusionProbability = 1 }))!.Message,
            Does.Contain("InitialInclusionProbability"));
        Assert.That(Assert.Throws<ArgumentException>(() => new InferenceNetwork(4, 2, 3, new InferenceNetworkOptions { MinLogVariance = 3 }))!.Message,
            Does.Contain("MinLogVariance"));
        Assert.That(Assert.Throws<ArgumentException>(() => new InferenceNetwork(4, 0, 3))!.Message, Does.Contain("tasks"));
    }
}
