using Microsoft.ML.TaskVectors.TaskVectors;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// WUDI (SPEC 2.1): for each 2-D weight, start from Σt τt and minimise
/// Σt ‖(τm − τt)·τtᵀ‖² / ‖τt‖² with Adam, so the merged update acts on each task's input subspace as
/// that task's own vector does; other tensors are averaged. θ = θ0 + τm. Data-free. The optimisation runs on
/// <see cref="Device"/> (its matrix products are GPU work: hundreds of steps per weight); the result is returned on the CPU.
/// </summary>
public sealed class WudiMerging : MergeMethod
{
    /// <summary>Creates the method.</summary>
    /// <param name="learningRate">Adam's learning rate (default 1e-5).</param>
    /// <param name="steps">Adam steps per tensor (default 300).</param>
    /// <param name="device">Where the optimisation runs (null: the CPU); see <see cref="Runtime.ComputeDevice.Resolve"/>.</param>
    public WudiMerging(double learningRate = 1e-5, int steps = 300, Device? device = null)
    {
        if (!(learningRate > 0) || !double.IsFinite(learningRate))
            throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "WUDI's learning rate must be a positive number.");
        if (steps < 0) throw new ArgumentOutOfRangeException(nameof(steps), steps, "WUDI's step count must be ≥ 0.");
        LearningRate = learningRate;
        Steps = steps;
        Device = device ?? CPU;
    }

    /// <summary>Where the optimisation runs.</summary>
    public Device Device { get; }

    /// <inheritdoc />
    public override string Name => MergeMethods.WudiName;

    /// <summary>Adam's learning rate.</summary>
    public double LearningRate { get; }

    /// <summary>Adam steps per 2-D tensor.</summary>
    public int Steps { get; }

    /// <summary>The objective for one tensor: Σt ‖(τm − τt)·τtᵀ‖² / ‖τt‖² (tasks with τt = 0 contribute nothing).</summary>
    public static Tensor Objective(Tensor merged, IReadOnlyList<Tensor> taskVectors)
    {
        var total = zeros(1, dtype: merged.dtype, device: merged.device);
        foreach (var tau in taskVectors)
        {
            if (!tau.any().item<bool>()) continue;
            var norm = tau.square().sum();
            // ‖Δ·τᵀ‖² = ⟨Δ·(τᵀτ), Δ⟩; use whichever Gram side is smaller.
            var delta = merged - tau;
            var value = tau.shape[0] <= tau.shape[1]
                ? delta.matmul(tau.t()).square().sum()
                : (delta.matmul(tau.t().matmul(tau)) * delta).sum();
            total = total + value / norm;
        }
        return total.squeeze();
    }

    /// <inheritdoc />
    /// <remarks>
    /// Each Adam step costs one matrix product: the objective is quadratic in τm (see <see cref="Quadratic"/>), so
    /// its gradient 2·(R + (τm − S)·A) comes from A and R formed once per tensor, where differentiating the sum
    /// over tasks would cost three products per task and step.
    /// </remarks>
    public override Tensor MergeTensor(string tensorName, ITaskVectorSet taskVectors)
    {
        ValidateArguments(tensorName, taskVectors);
        using var scope = NewDisposeScope();
        var tasks = Enumerable.Range(0, taskVectors.Count).Select(t => taskVectors.Get(t, tensorName)).ToArray();
        if (tasks[0].dim() != 2) return (tasks.Aggregate((a, b) => a + b) / tasks.Length).MoveToOuterDisposeScope();
        tasks = tasks.Select(t => t.to(Device)).ToArray();
        var sum = tasks.Aggregate((a, b) => a + b);
        if (Steps == 0) return sum.cpu().MoveToOuterDisposeScope();

        var objective = Quadratic.Of(tasks, sum);
        // Adam as torch.optim.Adam computes it (β1 0.9, β2 0.999, ε 1e-8), on plain tensors: the gradient is formed
        // directly, with no autograd graph to hang it on.
        const double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8;
        var merged = sum.clone();
        var mean = zeros_like(merged);
        var meanSquare = zeros_like(merged);
        for (int step = 1; step <= Steps; step++)
        {
            using var stepScope = NewDisposeScope();
            var (value, gradient) = objective.ValueAndGradient(merged);
            if (!double.IsFinite(value))
                throw new InvalidOperationException($"WUDI: the objective of '{tensorName}' became {value} at step {step}; lower the learning rate.");
            mean.mul_(beta1).add_(gradient, alpha: 1 - beta1);
            meanSquare.mul_(beta2).addcmul_(gradient, gradient, value: 1 - beta2);
            double correction1 = 1 - Math.Pow(beta1, step), correction2 = 1 - Math.Pow(beta2, step);
            var denominator = meanSquare.sqrt().div_(Math.Sqrt(correction2)).add_(epsilon);
            merged.addcdiv_(mean, denominator, value: -LearningRate / correction1);
        }
        return merged.cpu().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// WUDI's objective as the quadratic it is, around the start S: with D = τm − S,
    /// f(τm) = f(S) + 2⟨R, D⟩ + ⟨D·A, D⟩ and ∇f(τm) = 2·(R + D·A), where A = Σt τtᵀτt/‖τt‖² (in × in) and
    /// R = Σt (S − τt)·τtᵀτt/‖τt‖² is half the gradient at S (tasks with τt = 0 contribute nothing). R and f(S) are
    /// formed task by task in float64, each through the smaller Gram side: the terms of the gradient nearly
    /// cancel near an optimum, and float32 rounding there would be noise that Adam, which normalises the
    /// gradient, turns into full-size steps (a single task vector would drift away from itself). A, whose
    /// rounding only bends the curvature slightly, stays in the tasks' dtype.
    /// </summary>
    internal sealed class Quadratic
    {
        private Quadratic(Tensor start, Tensor a, Tensor residual, double valueAtStart) =>
            (Start, A, Residual, ValueAtStart) = (start, a, residual, valueAtStart);

        /// <summary>The start S.</summary>
        public Tensor Start { get; }

        /// <summary>Σt τtᵀτt/‖τt‖².</summary>
        public Tensor A { get; }

        /// <summary>R, half the gradient at S.</summary>
        public Tensor Residual { get; }

        /// <summary>f(S).</summary>
        public double ValueAtStart { get; }

        /// <summary>The quadratic of 2-D task vectors of one shape around <paramref name="start"/>, in their dtype (in the caller's dispose scope).</summary>
        public static Quadratic Of(IReadOnlyList<Tensor> taskVectors, Tensor start)
        {
            long rows = start.shape[0], cols = start.shape[1];
            var a = zeros([cols, cols], start.dtype, start.device);
            var residual = zeros(start.shape, ScalarType.Float64, start.device);
            var start64 = start.to(ScalarType.Float64);
            double value = 0;
            foreach (var task in taskVectors)
            {
                using var taskScope = NewDisposeScope();
                if (!task.any().item<bool>()) continue;
                var tau = task.to(ScalarType.Float64);
                double norm = tau.square().sum().item<double>();
                a.add_(task.t().matmul(task), alpha: 1 / norm);
                var delta = start64 - tau;
                if (rows <= cols)
                {
                    var m = delta.matmul(tau.t());                                    // rows × rows
                    residual.add_(m.matmul(tau), alpha: 1 / norm);
                    value += m.square().sum().item<double>() / norm;
                }
                else
                {
                    var r = delta.matmul(tau.t().matmul(tau));                         // through cols × cols
                    residual.add_(r, alpha: 1 / norm);
                    value += (r * delta).sum().item<double>() / norm;
                }
            }

            return new Quadratic(start, a, residual.to(start.dtype), value);
        }

        /// <summary>The objective at <paramref name="merged"/> and its gradient (in the caller's dispose scope).</summary>
        public (double Value, Tensor Gradient) ValueAndGradient(Tensor merged)
        {
            var change = merged - Start;
            var curvature = change.matmul(A);
            double value = ValueAtStart + 2 * (Residual * change).sum(ScalarType.Float64).item<double>()
                + (curvature * change).sum(ScalarType.Float64).item<double>();
            return (value, curvature.add_(Residual).mul_(2));
        }
    }
}
