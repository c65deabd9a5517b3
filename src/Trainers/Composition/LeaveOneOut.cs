using Microsoft.ML.TaskVectors.Composition;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Runtime;
using Microsoft.ML.TaskVectors.TaskVectors;

namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>
/// Leave-one-out (review discussion): for each task t, compose the other N−1 task vectors with a learned method trained on
/// the other N−1 tasks, then score task t, which neither the vectors nor the training saw, through its own head. Task-level
/// methods apply their learned coefficients; sample-specific methods run their inference network on t's samples.
/// Each task is scored on its selection split (its training split when it has none).
/// </summary>
public static class LeaveOneOut
{
    /// <summary>Runs leave-one-out over a pre-trained model and its task vectors.</summary>
    /// <param name="model">θ0.</param>
    /// <param name="taskVectors">The N task vectors, one per task, in the same order.</param>
    /// <param name="tasks">The N tasks.</param>
    /// <param name="method">A name from <see cref="CompositionTrainers.Names"/> other than <c>negation</c>.</param>
    /// <param name="options">Seed, epochs, batch sizes.</param>
    /// <param name="engineOptions">Device and strategy of each engine.</param>
    /// <param name="progress">Which held-out task, and its training progress.</param>
    /// <param name="cancellationToken">Stops the run.</param>
    public static IReadOnlyList<LeaveOneOutResult> Run(ClipModel model, ITaskVectorSet taskVectors, IReadOnlyList<CompositionTask> tasks, string method,
        LeaveOneOutOptions? options = null, CompositionEngineOptions? engineOptions = null, IProgress<LeaveOneOutProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(taskVectors);
        // A pool carries its own blocks; the view hides the pool, so hand them on.
        var blocks = taskVectors is TaskVectorPool pool ? pool.Blocks : null;
        return Run(view => CompositionEngine.Create(model, view, blocks, engineOptions, cancellationToken: cancellationToken),
            taskVectors, tasks, method, options, progress, cancellationToken);
    }

    /// <summary>Runs leave-one-out with engines built by <paramref name="engineFactory"/> over each N−1 view.</summary>
    /// <param name="engineFactory">Builds an engine over a task-vector set; the engine is disposed after its run.</param>
    /// <param name="taskVectors">The N task vectors, one per task, in the same order.</param>
    /// <param name="tasks">The N tasks.</param>
    /// <param name="method">A name from <see cref="CompositionTrainers.Names"/> other than <c>negation</c>.</param>
    /// <param name="options">Seed, epochs, batch sizes.</param>
    /// <param name="progress">Which held-out task, and its training progress.</param>
    /// <param name="cancellationToken">Stops the run.</param>
    /// <returns>One row per task, in the tasks' order.</returns>
    /// <exception cref="ArgumentException">
    /// Fewer than 2 tasks, tasks and task vectors disagree, or the method is unknown or is <c>negation</c> (whose
    /// target and controls have no held-out reading).
    /// </exception>
    public static IReadOnlyList<LeaveOneOutResult> Run(Func<ITaskVectorSet, CompositionEngine> engineFactory, ITaskVectorSet taskVectors,
        IReadOnlyList<CompositionTask> tasks, string method, LeaveOneOutOptions? options = null, IProgress<LeaveOneOutProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(engineFactory);
        ArgumentNullException.ThrowIfNull(taskVectors);
        ArgumentNullException.ThrowIfNull(tasks);
        ArgumentNullException.ThrowIfNull(method);
        options ??= new LeaveOneOutOptions();
        if (method == "negation")
            throw new ArgumentException("Leave-one-out does not apply to 'negation' (its first task is forgotten, not held out); choose another method.", nameof(method));
        if (!CompositionTrainers.Names.Contains(method))
            throw new ArgumentException($"Unknown composition method '{method}'; known: {string.Join(", ", CompositionTrainers.Names.Where(n => n != "negation"))}.", nameof(method));
        if (tasks.Count < 2)
            throw new ArgumentException($"Leave-one-out needs at least 2 tasks (one held out, one to train on), found {tasks.Count}.", nameof(tasks));
        if (taskVectors.Count != tasks.Count)
            throw new ArgumentException($"{tasks.Count} task(s) were given for {taskVectors.Count} task vector(s) ({string.Join(", ", taskVectors.TaskNames)}); give one task per task vector, in the same order.", nameof(tasks));
        if (options.EvaluationBatchSize < 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.EvaluationBatchSize, "LeaveOneOutOptions.EvaluationBatchSize must be at least 1.");

        var results = new List<LeaveOneOutResult>(tasks.Count);
        for (int t = 0; t < tasks.Count; t++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var heldOut = tasks[t];
            var others = tasks.Where((_, i) => i != t).ToArray();
            using var engine = engineFactory(new TaskVectorSubset(taskVectors, t));
            int index = t;
            var inner = progress is null ? null : new SynchronousProgress<CompositionProgress>(p => progress.Report(new LeaveOneOutProgress(index, tasks.Count, heldOut.Name, p)));
            using var trained = CompositionTrainers.Train(method, engine, others, options.Seed, options.Epochs, options.BatchSize, inner, cancellationToken);
            CompositionTask[] scored = [heldOut];
            var score = CompositionEvaluator.Evaluate(engine, scored, s => s.Selection ?? s.Train, trained, options.EvaluationBatchSize, cancellationToken)[0];
            double pretrained = CompositionEvaluator.Accuracy(engine, scored, s => s.Selection ?? s.Train, null, options.EvaluationBatchSize, cancellationToken)[0];
            results.Add(new LeaveOneOutResult(heldOut.Name, score.Accuracy, pretrained, score.GatedRatio));
        }
        return results;
    }
}
