using TorchSharp;

namespace Microsoft.ML.TaskVectors.TaskVectors;

/// <summary>
/// An <see cref="ITaskVectorSet"/> held in memory: one dictionary of tensors per task. The
/// constructor copies every tensor (as float32 on the CPU), so the caller keeps ownership of its
/// own tensors; <see cref="Get"/> returns a fresh copy owned by the caller. Dispose the set to free
/// its copies.
/// </summary>
public sealed class InMemoryTaskVectorSet : ITaskVectorSet, IDisposable
{
    private readonly Dictionary<string, torch.Tensor>[] _tensors;
    private readonly Dictionary<string, long[]> _shapes;
    private bool _disposed;

    /// <summary>Creates the set.</summary>
    /// <param name="taskNames">One display name per task.</param>
    /// <param name="taskVectors">Per task, tensor name → tensor; every task must hold the same names and shapes.</param>
    /// <exception cref="ArgumentException">
    /// Counts differ, no task is given, or tensor names/shapes differ between tasks (the message lists
    /// every offending tensor).
    /// </exception>
    public InMemoryTaskVectorSet(IReadOnlyList<string> taskNames, IReadOnlyList<IReadOnlyDictionary<string, torch.Tensor>> taskVectors)
    {
        ArgumentNullException.ThrowIfNull(taskNames);
        ArgumentNullException.ThrowIfNull(taskVectors);
        if (taskNames.Count != taskVectors.Count)
        {
            throw new ArgumentException($"{taskNames.Count} task names were given for {taskVectors.Count} task vectors; give one name per task vector.", nameof(taskNames));
        }

        if (taskVectors.Count == 0)
        {
            throw new ArgumentException("At least one task vector is required.", nameof(taskVectors));
        }

        for (int t = 0; t < taskVectors.Count; t++)
        {
            if (taskVectors[t] is null)
            {
                throw new ArgumentException($"Task vector {t} ('{taskNames[t]}') is null.", nameof(taskVectors));
            }
        }

        var allNames = new SortedSet<string>(taskVectors.SelectMany(d => d.Keys), StringComparer.Ordinal);
        var problems = new List<string>();
        foreach (var name in allNames)
        {
            var missing = Enumerable.Range(0, taskVectors.Count).Where(t => !taskVectors[t].ContainsKey(name)).ToList();
            if (missing.Count > 0)
            {
                problems.Add($"'{name}' is missing from task(s) {string.Join(", ", missing.Select(t => $"'{taskNames[t]}'"))}");
                continue;
            }

            var shapes = taskVectors.Select(d => d[name] is null ? null : d[name].shape).ToList();
            int nullIndex = shapes.FindIndex(s => s is null);
            if (nullIndex >= 0)
            {
                problems.Add($"'{name}' is null in task '{taskNames[nullIndex]}'");
                continue;
            }

            var distinct = shapes.Select(s => Format(s!)).Distinct().ToList();
            if (distinct.Count > 1)
            {
                problems.Add($"'{name}' has different shapes: {string.Join(", ", Enumerable.Range(0, shapes.Count).Select(t => $"'{taskNames[t]}' {Format(shapes[t]!)}"))}");
            }
        }

        if (problems.Count > 0)
        {
            throw new ArgumentException(
                $"Every task vector must hold the same tensor names and shapes; {problems.Count} tensor(s) differ: {string.Join("; ", problems)}.",
                nameof(taskVectors));
        }

        TaskNames = Array.AsReadOnly(taskNames.ToArray());
        TensorNames = Array.AsReadOnly(allNames.ToArray());
        _shapes = allNames.ToDictionary(n => n, n => taskVectors[0][n].shape, StringComparer.Ordinal);
        _tensors = new Dictionary<string, torch.Tensor>[taskVectors.Count];
        using var scope = torch.NewDisposeScope();
        for (int t = 0; t < taskVectors.Count; t++)
        {
            _tensors[t] = new Dictionary<string, torch.Tensor>(StringComparer.Ordinal);
            foreach (var name in allNames)
            {
                var copy = taskVectors[t][name].detach().to(torch.ScalarType.Float32, torch.CPU).clone();
                _tensors[t][name] = copy.DetachFromDisposeScope();
            }
        }
    }

    /// <inheritdoc />
    public int Count => _tensors.Length;

    /// <inheritdoc />
    public IReadOnlyList<string> TaskNames { get; }

    /// <inheritdoc />
    public IReadOnlyList<string> TensorNames { get; }

    /// <inheritdoc />
    public long[] GetShape(string tensorName)
    {
        ArgumentNullException.ThrowIfNull(tensorName);
        return _shapes.TryGetValue(tensorName, out var shape)
            ? (long[])shape.Clone()
            : throw new KeyNotFoundException($"The task-vector set has no tensor named '{tensorName}'.");
    }

    /// <inheritdoc />
    public torch.Tensor Get(int task, string tensorName)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(tensorName);
        if ((uint)task >= (uint)_tensors.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(task), task, $"Task index must be in [0, {_tensors.Length - 1}].");
        }

        return _tensors[task].TryGetValue(tensorName, out var tensor)
            ? tensor.clone()
            : throw new KeyNotFoundException($"The task-vector set has no tensor named '{tensorName}'.");
    }

    /// <summary>Frees the set's tensor copies.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        foreach (var task in _tensors)
        {
            foreach (var tensor in task.Values)
            {
                tensor.Dispose();
            }
        }
    }

    private static string Format(long[] shape) => "[" + string.Join(", ", shape) + "]";
}
