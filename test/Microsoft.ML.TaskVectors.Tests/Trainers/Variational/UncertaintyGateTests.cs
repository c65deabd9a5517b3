using TorchSharp;
using Microsoft.ML.TaskVectors.Trainers.Variational;
using static Microsoft.ML.TaskVectors.Tests.Trainers.Variational.VariationalTestHelpers;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Trainers.Variational;

public class UncertaintyGateTests
{
    private const int D = 4, N = 2, M = 3;

    /// <summary>A smooth stand-in for μ(x): z = 0.3·tanh(x·A) as [B, N, M], A fixed.</summary>
    private sealed class MeanFunction
    {
        public MeanFunction(ScalarType dtype = ScalarType.Float64, int seed = 31) =>
            Matrix = randn(D, N * M, dtype: ScalarType.Float64, generator: new Generator((ulong)seed)).to(dtype).DetachFromDisposeScope();

        public Tensor Matrix { get; }

        public Tensor Apply(Tensor x) => (0.3 * x.matmul(Matrix.to(x.dtype)).tanh()).view(x.shape[0], N, M);

        /// <summary>The same function on plain doubles, for reference computations.</summary>
        public double[] Apply(double[] x)
        {
            var a = Values(Matrix);
            var z = new double[N * M];
            for (int k = 0; k < N * M; k++)
            {
                double s = 0;
                for (int i = 0; i < D; i++) s += x[i] * a[i * N * M + k];
                z[k] = 0.3 * Math.Tanh(s);
            }
            return z;
        }
    }

    private static Tensor Features(int batch, int seed, ScalarType dtype = ScalarType.Float64) =>
        randn(batch, D, dtype: ScalarType.Float64, generator: new Generator((ulong)seed)).to(dtype);

    private static void Train(UncertaintyGate gate, MeanFunction f, int batches, ScalarType dtype = ScalarType.Float64)
    {
        gate.train();
        for (int i = 0; i < batches; i++)
        {
            using var scope = NewDisposeScope();
            var x = Features(8, 100 + i, dtype);
            using var output = gate.Forward(x, f.Apply(x), f.Apply);
        }
    }

    private static double[] Row(double[] values, int row, int width) => values.Skip(row * width).Take(width).ToArray();

    [Test]
    public void InferenceGate_IsTheThresholdRuleOnRunningStatistics()
    {
        using var scope = NewDisposeScope();
        var f = new MeanFunction();
        using var gate = new UncertaintyGate(D, N, M, new UncertaintyGateOptions { Seed = 3 });
        gate.to(ScalarType.Float64);
        Train(gate, f, 3);
        using (no_grad())
        {
            gate.LogPsi1.copy_(tensor(Math.Log(0.08)));
            gate.LogPsi2.copy_(tensor(Math.Log(0.7)));
        }
        gate.eval();
        var x = Features(6, 7);
        using var output = gate.Forward(x, f.Apply(x), f.Apply);
        Assert.That(output.IsHard, Is.True);

        // Everything again from the formulas of SPEC 2.3, on doubles.
        var u = Values(gate.Direction);
        var runningMean = Values(gate.RunningMean);
        var runningVar = Values(gate.RunningVariance);
        var sensitivityMean = Values(gate.SensitivityMean);
        var xs = Values(x);
        var uncertainty = new List<double>();
        var threshold = new List<double>();
        var gateRule = new List<double>();
        for (int b = 0; b < 6; b++)
        {
            var xb = Row(xs, b, D);
            double eps = 1e-2 * Math.Sqrt(xb.Sum(v => v * v));
            var z = f.Apply(xb);
            var zp = f.Apply(xb.Select((v, i) => v + eps * u[i]).ToArray());
            for (int k = 0; k < N * M; k++)
            {
                double s = Math.Abs(zp[k] - z[k]) / eps / (sensitivityMean[k] + 1e-8);
                double v = Math.Abs(z[k] - runningMean[k]) / Math.Sqrt(runningVar[k] + 1e-5);
                double uk = 0.5 * s + 0.5 * v;
                double gamma = 0.08 * (1 + 0.7 * uk);
                uncertainty.Add(uk);
                threshold.Add(gamma);
                gateRule.Add(Math.Abs(z[k]) >= gamma ? 1 : 0);
            }
        }
        Assert.That(Values(output.Uncertainty), Is.EqualTo(uncertainty).Within(1e-9));
        Assert.That(Values(output.Threshold), Is.EqualTo(threshold).Within(1e-9));
        Assert.That(Values(output.Gate), Is.EqualTo(gateRule));
        Assert.That(Values(output.Gated), Is.EqualTo(Values(output.Coefficients).Zip(gateRule, (z, g) => z * g)));
        Assert.That(gateRule.Distinct().Count(), Is.EqualTo(2), "the example should open some gates and close others");
    }

    [Test]
    public void InferenceGate_ScoresASampleAloneAsInsideALargeBatch()
    {
        using var scope = NewDisposeScope();
        var f = new MeanFunction(ScalarType.Float32);
        using var gate = new UncertaintyGate(D, N, M, new UncertaintyGateOptions { Seed = 4 });
        Train(gate, f, 4, ScalarType.Float32);
        gate.eval();
        var x = Features(16, 9, ScalarType.Float32);
        using var batch = gate.Forward(x, f.Apply(x), f.Apply);
        for (int b = 0; b < 16; b++)
        {
            var one = x[b..(b + 1)];
            using var alone = gate.Forward(one, f.Apply(one), f.Apply);
            Assert.That(Values(alone.Gate), Is.EqualTo(Values(batch.Gate[b..(b + 1)])), $"sample {b}");
            Assert.That(Values(alone.Uncertainty), Is.EqualTo(Values(batch.Uncertainty[b..(b + 1)])).Within(1e-5), $"sample {b}");
        }
        // In training the same sample is scored against its batch, so it is not batch-independent there.
        gate.train();
        using var trainingBatch = gate.Forward(x, f.Apply(x), f.Apply);
        using var trainingPair = gate.Forward(x[0..2], f.Apply(x[0..2]), f.Apply);
        Assert.That(Values(trainingPair.Deviation[0..1]), Is.Not.EqualTo(Values(trainingBatch.Deviation[0..1])).Within(1e-3));
    }

    [Test]
    public void SoftGate_TendsToTheHardGateAsSharpnessGrows()
    {
        using var scope = NewDisposeScope();
        var f = new MeanFunction();
        var x = Features(32, 11);
        var z = f.Apply(x);
        var distances = new List<double>();
        foreach (var kappa in new[] { 20.0, 200, 2000, 2e6 })
        {
            using var gate = new UncertaintyGate(D, N, M, new UncertaintyGateOptions { Sharpness = kappa, ResampleDirectionEachBatch = false });
            gate.to(ScalarType.Float64);
            using var output = gate.Forward(x, z, f.Apply);
            Assert.That(output.IsHard, Is.False);
            var hard = output.Coefficients.abs().ge(output.Threshold).to(ScalarType.Float64);
            distances.Add(Scalar((output.Gate - hard).abs().mean()));
            if (kappa == 2e6)
            {
                // Away from exact ties the sharpest soft gate is the hard gate to machine precision.
                var clear = (output.Coefficients.abs() - output.Threshold).abs().gt(1e-4);
                Assert.That(Scalar((output.Gate - hard).abs().masked_select(clear).max()), Is.LessThan(1e-12));
            }
        }
        for (int i = 1; i < distances.Count; i++) Assert.That(distances[i], Is.LessThan(distances[i - 1]));
    }

    [Test]
    public void Regularisers_MatchHandComputedValues()
    {
        using var scope = NewDisposeScope();
        // z_j = a_j·x_j² on d = 2, one task, two blocks, three samples: every quantity has a short closed form.
        double[] a = [0.5, -0.8];
        double[,] xs = { { 0.3, 0.6 }, { 0.8, -0.2 }, { -0.5, 0.45 } };
        Tensor Mean(Tensor x) => (x.square() * tensor(a)).view(x.shape[0], 1, 2);
        using var gate = new UncertaintyGate(2, 1, 2, new UncertaintyGateOptions { ResampleDirectionEachBatch = false, Seed = 5 });
        gate.to(ScalarType.Float64);
        using (no_grad())
        {
            gate.LogPsi1.copy_(tensor(Math.Log(0.07)));
            gate.LogPsi2.copy_(tensor(Math.Log(1.5)));
        }
        var x = tensor(xs);
        using var output = gate.Forward(x, Mean(x), Mean);
        using var terms = gate.Regularise(output);

        var u = Values(gate.Direction);
        var z = new double[3, 2];
        var s = new double[3, 2];
        for (int b = 0; b < 3; b++)
        {
            double eps = 1e-2 * Math.Sqrt(xs[b, 0] * xs[b, 0] + xs[b, 1] * xs[b, 1]);
            for (int j = 0; j < 2; j++)
            {
                z[b, j] = a[j] * xs[b, j] * xs[b, j];
                double shifted = xs[b, j] + eps * u[j];
                s[b, j] = Math.Abs(a[j] * shifted * shifted - z[b, j]) / eps;
            }
        }
        double boundary = 0, uncertainty = 0, kl = 0, nll = 0;
        var sensitivityMean = new double[2];
        var batchVariance = new double[2];
        for (int j = 0; j < 2; j++)
        {
            // The first training batch sets the running statistics, so S is divided by this batch's mean of S.
            sensitivityMean[j] = (s[0, j] + s[1, j] + s[2, j]) / 3;
            double mean = (z[0, j] + z[1, j] + z[2, j]) / 3;
            double variance = Enumerable.Range(0, 3).Sum(b => (z[b, j] - mean) * (z[b, j] - mean)) / 3;
            batchVariance[j] = variance * 3 / 2;
            for (int b = 0; b < 3; b++)
            {
                double v = Math.Abs(z[b, j] - mean) / Math.Sqrt(variance + 1e-5);
                double un = 0.5 * s[b, j] / (sensitivityMean[j] + 1e-8) + 0.5 * v;
                double gamma = 0.07 * (1 + 1.5 * un);
                double omega = Sigmoid(20 * (Math.Abs(z[b, j]) - gamma));
                boundary += Math.Max(0, 0.1 - Math.Abs(Math.Abs(z[b, j]) - gamma)) / 3;
                uncertainty += un * omega / 3;
                kl += (omega * Math.Log(omega / 0.5) + (1 - omega) * Math.Log((1 - omega) / 0.5)) / 3;
                nll += (Math.Pow(omega * z[b, j], 2) / 2 + 0.5 * Math.Log(2 * Math.PI)) / 3;
            }
        }
        double exploration = -Math.Log(0.02 + 1e-5) - Math.Log(0.5 + 1e-5);
        double total = 1e-3 * (1e-4 * boundary + 1e-3 * exploration + 1e-2 * uncertainty + kl + nll);

        var values = terms.Values();
        Assert.That(boundary, Is.GreaterThan(0), "the example should put some coefficients inside the boundary band");
        Assert.That(values["boundary"], Is.EqualTo(boundary).Within(1e-9));
        Assert.That(values["exploration"], Is.EqualTo(exploration).Within(1e-9));
        Assert.That(values["uncertainty"], Is.EqualTo(uncertainty).Within(1e-9));
        Assert.That(values["inclusion_kl"], Is.EqualTo(kl).Within(1e-9));
        Assert.That(values["prior_nll"], Is.EqualTo(nll).Within(1e-9));
        Assert.That(values["total"], Is.EqualTo(total).Within(1e-12));
        Assert.That(Values(gate.SensitivityMean), Is.EqualTo(sensitivityMean).Within(1e-12));
        Assert.That(Values(gate.RunningVariance), Is.EqualTo(batchVariance).Within(1e-12));

        // At inference Ω is 0 or 1, so against π0 = 1/2 every coefficient costs exactly ln 2.
        gate.eval();
        using var hard = gate.Forward(x, Mean(x), Mean);
        using var hardTerms = gate.Regularise(hard);
        Assert.That(hardTerms.Values()["inclusion_kl"], Is.EqualTo(2 * Math.Log(2)).Within(1e-12));
    }

    [Test]
    public void RunningStatistics_StartFromTheFirstBatchThenMoveWithMomentum()
    {
        using var scope = NewDisposeScope();
        using var gate = new UncertaintyGate(D, N, M);
        gate.to(ScalarType.Float64);
        Assert.That(gate.BatchesTracked, Is.EqualTo(0));
        var first = randn(5, N, M, dtype: ScalarType.Float64, generator: new Generator(1));
        var second = randn(7, N, M, dtype: ScalarType.Float64, generator: new Generator(2)) + 1;
        gate.Forward(first).Dispose();
        Assert.That(Values(gate.RunningMean), Is.EqualTo(Values(first.mean([0]))).Within(1e-12));
        gate.Forward(second).Dispose();
        Assert.That(gate.BatchesTracked, Is.EqualTo(2));
        Assert.That(Values(gate.RunningMean), Is.EqualTo(Values(0.9 * first.mean([0]) + 0.1 * second.mean([0]))).Within(1e-12));
        var expectedVar = 0.9 * first.var(0, unbiased: true) + 0.1 * second.var(0, unbiased: true);
        Assert.That(Values(gate.RunningVariance), Is.EqualTo(Values(expectedVar)).Within(1e-12));
        // Without a mean function S is 0 and so is its running mean; inference leaves the statistics alone.
        Assert.That(Values(gate.SensitivityMean), Is.All.EqualTo(0.0));
        gate.eval();
        gate.Forward(second).Dispose();
        Assert.That(gate.BatchesTracked, Is.EqualTo(2));
    }

    [Test]
    public void Psi_StaysPositiveUnderStrongGradientSteps()
    {
        using var scope = NewDisposeScope();
        using var gate = new UncertaintyGate(D, N, M);
        var z = randn(4, N, M, generator: new Generator(3));
        // Adam moves log ψ by up to the learning rate per step whatever the gradient's size, driving ψ1 down by orders of
        // magnitude; the gradient with respect to log ψ shrinks with ψ, so it approaches 0 but never crosses it.
        using var optimiser = optim.Adam(gate.parameters(), 0.5);
        double previous = gate.Psi1;
        for (int step = 0; step < 40; step++)
        {
            using var stepScope = NewDisposeScope();
            optimiser.zero_grad();
            using var output = gate.Forward(z);
            (100 * output.Threshold.sum()).backward();
            optimiser.step();
            Assert.That(gate.Psi1, Is.GreaterThan(0).And.LessThan(previous), $"step {step}");
            Assert.That(gate.Psi2, Is.GreaterThan(0), $"step {step}");
            previous = gate.Psi1;
        }
        Assert.That(gate.Psi1, Is.LessThan(1e-3));
        Assert.That(Assert.Throws<ArgumentException>(() => new UncertaintyGate(D, N, M, new UncertaintyGateOptions { InitialPsi1 = 0 }))!.Message,
            Does.Contain("InitialPsi1"));
        Assert.That(Assert.Throws<ArgumentException>(() => new UncertaintyGate(D, N, M, new UncertaintyGateOptions { InitialPsi2 = -1 }))!.Message,
            Does.Contain("InitialPsi2"));
    }

    [Test]
    public void SoftGate_PassesGradientAtZero()
    {
        using var scope = NewDisposeScope();
        using var gate = new UncertaintyGate(D, N, M);
        gate.to(ScalarType.Float64);
        var z = zeros(4, N, M, dtype: ScalarType.Float64, requires_grad: true);
        var weights = randn(4, N, M, dtype: ScalarType.Float64, generator: new Generator(6));
        using var output = gate.Forward(z);
        (output.Gated * weights).sum().backward();
        // z = 0 everywhere: V = 0, S = 0, so Γ = ψ1 and ∂z̃/∂z = Ω = sigmoid(−κ·ψ1) ≈ sigmoid(−1) (ψ1 ≈ 0.05 in float32).
        Assert.That(Values(z.grad!), Is.EqualTo(Values(weights * Sigmoid(-20 * gate.Psi1))).Within(1e-12));
        Assert.That(Sigmoid(-20 * gate.Psi1), Is.EqualTo(Sigmoid(-1)).Within(1e-7));

        // End to end: an inference network whose μ starts at exactly 0 still receives gradient through the gate.
        using var network = new InferenceNetwork(D, N, M, new InferenceNetworkOptions { HiddenWidth = 5, Seed = 2 });
        using var gate32 = new UncertaintyGate(D, N, M);
        var x = Features(4, 8, ScalarType.Float32);
        var mean = network.Mean(x);
        Assert.That(Values(mean), Is.All.EqualTo(0.0));
        using var gated = gate32.Forward(x, mean, network.Mean);
        (gated.Gated * weights.to(ScalarType.Float32)).sum().backward();
        var grad = network.state_dict()["mean.weight"].grad!;
        Assert.That(grad.isfinite().all().item<bool>(), Is.True);
        Assert.That(Scalar(grad.abs().max()), Is.GreaterThan(1e-4));
        Assert.That(gate32.LogPsi1.grad is null || gate32.LogPsi1.grad.isfinite().item<bool>(), Is.True);
    }

    [Test]
    public void State_RoundTripsThroughStateDict()
    {
        using var scope = NewDisposeScope();
        var f = new MeanFunction(ScalarType.Float32);
        using var source = new UncertaintyGate(D, N, M, new UncertaintyGateOptions { Seed = 1, TaskThresholdScales = [0.5, 1] });
        Train(source, f, 3, ScalarType.Float32);
        using (no_grad()) source.LogPsi2.add_(0.3);
        using var target = new UncertaintyGate(D, N, M, new UncertaintyGateOptions { Seed = 2 });
        Assert.That(source.state_dict().Keys, Is.EquivalentTo(new[]
        {
            "log_psi1", "log_psi2", "running_mean", "running_var", "sensitivity_mean", "num_batches_tracked", "direction", "threshold_scale",
        }));
        target.load_state_dict(source.state_dict());
        foreach (var (name, value) in source.state_dict())
            Assert.That(value.eq(target.state_dict()[name]).all().item<bool>(), Is.True, name);
        Assert.That(target.BatchesTracked, Is.EqualTo(3));

        source.eval();
        target.eval();
        var x = Features(5, 12, ScalarType.Float32);
        using var expected = source.Forward(x, f.Apply(x), f.Apply);
        using var actual = target.Forward(x, f.Apply(x), f.Apply);
        Assert.That(Values(actual.Threshold), Is.EqualTo(Values(expected.Threshold)));
        Assert.That(Values(actual.Gate), Is.EqualTo(Values(expected.Gate)));
    }

    [Test]
    public void Seed_MakesTrainingWithFreshDirectionsRepeatable()
    {
        using var scope = NewDisposeScope();
        var f = new MeanFunction(ScalarType.Float32);
        using var first = new UncertaintyGate(D, N, M, new UncertaintyGateOptions { Seed = 21 });
        using var second = new UncertaintyGate(D, N, M, new UncertaintyGateOptions { Seed = 21 });
        using var other = new UncertaintyGate(D, N, M, new UncertaintyGateOptions { Seed = 22 });
        Train(first, f, 3, ScalarType.Float32);
        Train(second, f, 3, ScalarType.Float32);
        Train(other, f, 3, ScalarType.Float32);
        foreach (var (name, value) in first.state_dict())
            Assert.That(value.eq(second.state_dict()[name]).all().item<bool>(), Is.True, name);
        Assert.That(first.SensitivityMean.eq(other.SensitivityMean).all().item<bool>(), Is.False);
    }

    [Test]
    public void TaskThresholdScales_LowerTheThresholdOfTheTargetTaskOnly()
    {
        using var scope = NewDisposeScope();
        var f = new MeanFunction();
        var x = Features(16, 13);
        var z = f.Apply(x);
        using var plain = new UncertaintyGate(D, N, M, new UncertaintyGateOptions { ResampleDirectionEachBatch = false });
        using var asymmetric = new UncertaintyGate(D, N, M, new UncertaintyGateOptions { ResampleDirectionEachBatch = false, TaskThresholdScales = [0.25, 1] });
        plain.to(ScalarType.Float64);
        asymmetric.to(ScalarType.Float64);
        using var p = plain.Forward(x, z, f.Apply);
        using var a = asymmetric.Forward(x, z, f.Apply);
        Assert.That(Values(a.Threshold[.., 0]), Is.EqualTo(Values(0.25 * p.Threshold[.., 0])).Within(1e-15));
        Assert.That(Values(a.Threshold[.., 1]), Is.EqualTo(Values(p.Threshold[.., 1])));
        var ratiosPlain = UncertaintyGate.GatedRatioPerTask(p.Gate);
        var ratiosAsymmetric = UncertaintyGate.GatedRatioPerTask(a.Gate);
        Assert.That(ratiosAsymmetric[0], Is.GreaterThan(ratiosPlain[0]));
        Assert.That(ratiosAsymmetric[1], Is.EqualTo(ratiosPlain[1]));
        Assert.That(Assert.Throws<ArgumentException>(() => new UncertaintyGate(D, N, M, new UncertaintyGateOptions { TaskThresholdScales = [1.0] }))!.Message,
            Does.Contain("TaskThresholdScales").And.Contain("(2)"));
        Assert.That(Assert.Throws<ArgumentException>(() => new UncertaintyGate(D, N, M, new UncertaintyGateOptions { TaskThresholdScales = [1.0, 0] }))!.Message,
            Does.Contain("TaskThresholdScales[1]"));
    }

    [Test]
    public void GatedRatio_CountsOpenGatesOverallAndPerTask()
    {
        using var scope = NewDisposeScope();
        // [2 samples, 2 tasks, 2 blocks]: task 0 has 3 of 4 open, task 1 has 1 of 4.
        var hard = tensor(new double[] { 1, 1, 0, 0, 1, 0, 1, 0 }).view(2, 2, 2);
        Assert.That(UncertaintyGate.GatedRatio(hard), Is.EqualTo(0.5));
        Assert.That(UncertaintyGate.GatedRatioPerTask(hard), Is.EqualTo(new[] { 0.75, 0.25 }));
        // A soft gate counts as open exactly where sigmoid(κ(|z| − Γ)) ≥ 1/2, the hard rule.
        var soft = tensor(new double[] { 0.9, 0.5, 0.49, 0.1, 0.7, 0.2, 0.51, 0 }).view(2, 2, 2);
        Assert.That(UncertaintyGate.GatedRatioPerTask(soft), Is.EqualTo(new[] { 0.75, 0.25 }));
        Assert.Throws<ArgumentException>(() => UncertaintyGate.GatedRatioPerTask(ones(3)));
    }

    [Test]
    public void BadInput_IsRejectedWithClearMessages()
    {
        using var scope = NewDisposeScope();
        var f = new MeanFunction(ScalarType.Float32);
        using var gate = new UncertaintyGate(D, N, M);
        Assert.That(Assert.Throws<ArgumentException>(() => gate.Forward(zeros(1, N, M)))!.Message, Does.Contain("at least 2 samples").And.Contain("eval()"));
        Assert.That(Assert.Throws<ArgumentException>(() => gate.Forward(zeros(4, N, M + 1)))!.Message, Does.Contain($"[B, {N}, {M}]"));
        var x = Features(4, 1, ScalarType.Float32);
        Assert.That(Assert.Throws<ArgumentException>(() => gate.Forward(x[.., 0..3], f.Apply(x), f.Apply))!.Message, Does.Contain($"[4, {D}]"));
        Assert.That(Assert.Throws<ArgumentException>(() => gate.Forward(x, f.Apply(x), t => zeros(4, N, 1)))!.Message, Does.Contain("mean function"));
        Assert.That(Assert.Throws<ArgumentException>(() => new UncertaintyGate(D, N, M, new UncertaintyGateOptions { Eta = 1.5 }))!.Message, Does.Contain("Eta"));
        gate.eval();
        using var single = gate.Forward(x[0..1], f.Apply(x[0..1]), f.Apply);
        Assert.That(single.Gate.shape, Is.EqualTo(new long[] { 1, N, M }));
    }
}
