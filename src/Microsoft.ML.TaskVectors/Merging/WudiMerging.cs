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
            var norm = tau.square().sum();
            if (norm.item<float>() == 0) continue;
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
    public override Tensor MergeTensor(string tensorName, ITaskVectorSet taskVectors)
    {
        ValidateArguments(tensorName, taskVectors);
        using var scope = NewDisposeScope();
        var tasks = Enumerable.Range(0, taskVectors.Count).Select(t => taskVectors.Get(t, tensorName)).ToArray();
        if (tasks[0].dim() != 2) return (tasks.Aggregate((a, b) => a + b) / tasks.Length).MoveToOuterDisposeScope();
        tasks = tasks.Select(t => t.to(Device)).ToArray();
        var sum = tasks.Aggregate((a, b) => a + b);

        var parameter = nn.Parameter(sum.clone());
        using (var optimizer = optim.Adam([parameter], lr: LearningRate))
        {
            for (int step = 0; step < Steps; step++)
            {
                using var stepScope = NewDisposeScope();
                optimizer.zero_grad();
                var loss = Objective(parameter, tasks);
                if (!float.IsFinite(loss.item<float>()))
                    throw new InvalidOperationException($"WUDI: the objective of '{tensorName}' became {loss.item<float>()} at step {step + 1}; lower the learning rate.");
                loss.backward();
                optimizer.step();
            }
            return parameter.detach().cpu().clone().MoveToOuterDisposeScope();
        }
    }
}
