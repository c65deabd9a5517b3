using System.Collections.Concurrent;
using Microsoft.ML.TaskVectors.Checkpoints;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.TaskVectors;

/// <summary>
/// N task vectors over the same tensors and the same blocks, kept in a chosen storage precision.
/// Tensors are read lazily; with <see cref="KeepInMemory"/> each one is cached (in the storage
/// precision) after its first read, which is what training wants, while merging streams without caching.
/// </summary>
public sealed class TaskVectorPool : ITaskVectorSet, IDisposable
{
    private readonly TaskVector[] _taskVectors;
    private readonly Dictionary<string, TensorInfo> _layout;
    private readonly ConcurrentDictionary<(int, string), Tensor> _cache = new();
    private readonly bool _ownsTaskVectors;

    /// <summary>Builds a pool; every task vector must have the same tensor names and shapes.</summary>
    /// <param name="taskVectors">The N task vectors, in task order.</param>
    /// <param name="storage">Precision τ is kept in: F32, F16 or BF16. Reads return float32 whatever it is.</param>
    /// <param name="blocks">How τ is split into blocks; one block per tensor when null.</param>
    /// <param name="keepInMemory">Cache each tensor after its first read.</param>
    /// <param name="ownsTaskVectors">Dispose the task vectors with the pool.</param>
    /// <exception cref="ArgumentException">The task vectors disagree; the message lists every offending tensor.</exception>
    public TaskVectorPool(IEnumerable<TaskVector> taskVectors, TensorDType storage = TensorDType.F32, BlockPartition? blocks = null,
        bool keepInMemory = false, bool ownsTaskVectors = true)
    {
        CheckStorage(storage);
        _taskVectors = taskVectors.ToArray();
        if (_taskVectors.Length == 0) throw new ArgumentException("A task-vector pool needs at least one task vector.", nameof(taskVectors));
        var first = _taskVectors[0];
        var problems = new List<string>();
        for (int t = 1; t < _taskVectors.Length; t++)
        {
            var tv = _taskVectors[t];
            foreach (var info in first.Tensors)
            {
                if (!tv.Contains(info.Name))
                    problems.Add($"'{info.Name}' is in '{first.Name}' but not in '{tv.Name}'");
                else if (!tv.GetInfo(info.Name).Shape.AsSpan().SequenceEqual(info.Shape))
                    problems.Add($"'{info.Name}' has shape {info.ShapeText} in '{first.Name}' but {tv.GetInfo(info.Name).ShapeText} in '{tv.Name}'");
            }
            foreach (var info in tv.Tensors)
                if (!first.Contains(info.Name)) problems.Add($"'{info.Name}' is in '{tv.Name}' but not in '{first.Name}'");
        }
        if (problems.Count > 0)
            throw new ArgumentException($"The task vectors do not cover the same tensors ({problems.Count} problem(s)):\n  " + string.Join("\n  ", problems), nameof(taskVectors));
        var duplicate = _taskVectors.GroupBy(t => t.Name).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
            throw new ArgumentException($"Two task vectors are named '{duplicate.Key}'; give each task a distinct name.", nameof(taskVectors));

        StorageDType = storage;
        KeepInMemory = keepInMemory;
        _ownsTaskVectors = ownsTaskVectors;
        Tensors = first.Tensors.Select(t => t with { DType = storage }).ToArray();
        _layout = Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        TensorNames = Tensors.Select(t => t.Name).ToArray();
        TaskNames = _taskVectors.Select(t => t.Name).ToArray();
        Blocks = blocks ?? BlockPartition.Create(Tensors);
        foreach (var name in TensorNames) Blocks.BlocksOf(name);
        if (Blocks.Blocks.SelectMany(b => b.TensorNames).Any(n => !_layout.ContainsKey(n)))
            throw new ArgumentException("The block partition names tensors that are not in the task vectors.", nameof(blocks));
    }

    /// <summary>Opens each fine-tuned checkpoint against one base and pools their task vectors.</summary>
    public static TaskVectorPool FromCheckpoints(Checkpoint @base, IEnumerable<Checkpoint> finetuned, TensorFilter? filter = null,
        TensorDType storage = TensorDType.F32, BlockPartition? blocks = null, bool keepInMemory = false) =>
        new(finetuned.Select(f => TaskVector.FromCheckpoints(@base, f, filter)).ToArray(), storage, blocks, keepInMemory);

    internal static void CheckStorage(TensorDType storage)
    {
        if (storage is not (TensorDType.F32 or TensorDType.F16 or TensorDType.BF16))
            throw new ArgumentOutOfRangeException(nameof(storage), storage, "Task vectors are stored as F32, F16 or BF16.");
    }

    /// <summary>The task vectors, in task order.</summary>
    public IReadOnlyList<TaskVector> TaskVectors => _taskVectors;

    /// <summary>Precision the task vectors are kept in.</summary>
    public TensorDType StorageDType { get; }

    /// <summary>Whether tensors are cached after their first read.</summary>
    public bool KeepInMemory { get; }

    /// <summary>The blocks shared by all task vectors.</summary>
    public BlockPartition Blocks { get; }

    /// <summary>The tensors (with the storage dtype), sorted by name.</summary>
    public IReadOnlyList<TensorInfo> Tensors { get; }

    /// <inheritdoc />
    public int Count => _taskVectors.Length;

    /// <inheritdoc />
    public IReadOnlyList<string> TaskNames { get; }

    /// <inheritdoc />
    public IReadOnlyList<string> TensorNames { get; }

    /// <summary>Entries per task vector.</summary>
    public long ParameterCount => Tensors.Sum(t => t.ElementCount);

    /// <inheritdoc />
    public long[] GetShape(string tensorName) => GetInfo(tensorName).Shape;

    /// <summary>Description of a tensor (with the storage dtype).</summary>
    public TensorInfo GetInfo(string tensorName) =>
        _layout.TryGetValue(tensorName, out var info) ? info : throw new KeyNotFoundException($"The task-vector pool has no tensor '{tensorName}'.");

    /// <summary>
    /// Reads τ_task for one tensor in the storage precision (cached when <see cref="KeepInMemory"/>).
    /// The caller owns the result.
    /// </summary>
    public Tensor GetStored(int task, string tensorName)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(task);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(task, Count);
        GetInfo(tensorName);
        if (KeepInMemory && _cache.TryGetValue((task, tensorName), out var cached)) return cached.clone();
        var type = StorageDType.ToScalarType()!.Value;
        var t = _taskVectors[task].Read(tensorName);
        if (StorageDType != TensorDType.F32) t = t.to(type, disposeAfter: true);
        if (!KeepInMemory) return t;
        var kept = _cache.GetOrAdd((task, tensorName), t);
        if (!ReferenceEquals(kept, t)) t.Dispose();
        kept.DetachFromDisposeScope();
        return kept.clone();
    }

    /// <inheritdoc />
    public Tensor Get(int task, string tensorName)
    {
        var stored = GetStored(task, tensorName);
        return stored.dtype == ScalarType.Float32 ? stored : stored.to(ScalarType.Float32, disposeAfter: true);
    }

    /// <summary>
    /// Σt τt for one tensor. When every task vector is a difference against the same base checkpoint
    /// (and τ is neither cached nor rounded to a lower storage precision) this is Σt θt − N·θ0,
    /// which reads the base once instead of N times.
    /// </summary>
    public Tensor Sum(string tensorName)
    {
        var sharedBase = _taskVectors[0].BaseCheckpoint;
        if (KeepInMemory || StorageDType != TensorDType.F32 || sharedBase is null || _taskVectors.Any(t => !ReferenceEquals(t.BaseCheckpoint, sharedBase)))
            return ITaskVectorSet.SumOfReads(this, tensorName);
        GetInfo(tensorName);
        var sum = _taskVectors[0].SourceCheckpoint.ReadFloat32(tensorName);
        for (int t = 1; t < Count; t++)
        {
            using var next = _taskVectors[t].SourceCheckpoint.ReadFloat32(tensorName);
            sum.add_(next);
        }
        using var @base = sharedBase.ReadFloat32(tensorName);
        return sum.add_(@base, -Count);
    }

    /// <summary>
    /// What one tensor's τt are the differences of, for every task at once with the base read once:
    /// (θ0, [θ1 … θN]) as float32 tensors owned by the caller, when every task vector is θt − θ0
    /// against the same base checkpoint and τ is neither cached nor stored in a lower precision (so
    /// θt − θ0 is exactly what <see cref="Get"/> returns); null otherwise.
    /// </summary>
    internal (Tensor Base, Tensor[] Finetuned)? ReadDifferenceParts(string tensorName)
    {
        var sharedBase = _taskVectors[0].BaseCheckpoint;
        if (KeepInMemory || StorageDType != TensorDType.F32 || sharedBase is null || _taskVectors.Any(t => !ReferenceEquals(t.BaseCheckpoint, sharedBase)))
            return null;
        GetInfo(tensorName);
        using var scope = NewDisposeScope();
        var @base = sharedBase.ReadFloat32(tensorName);
        var finetuned = _taskVectors.Select(t => t.SourceCheckpoint.ReadFloat32(tensorName)).ToArray();
        @base.MoveToOuterDisposeScope();
        foreach (var f in finetuned) f.MoveToOuterDisposeScope();
        return (@base, finetuned);
    }

    /// <summary>All N task vectors' copies of one tensor stacked into a float32 tensor of shape [N, …].</summary>
    public Tensor Stack(string tensorName)
    {
        using var scope = NewDisposeScope();
        var parts = Enumerable.Range(0, Count).Select(t => Get(t, tensorName)).ToArray();
        return stack(parts).MoveToOuterDisposeScope();
    }

    /// <summary>Reads every tensor now (with <see cref="KeepInMemory"/>), so later reads cost no I/O.</summary>
    public void Load(IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        if (!KeepInMemory) throw new InvalidOperationException("Load caches the task vectors; create the pool with keepInMemory: true.");
        int done = 0, total = Count * TensorNames.Count;
        for (int t = 0; t < Count; t++)
            foreach (var name in TensorNames)
            {
                cancellationToken.ThrowIfCancellationRequested();
                GetStored(t, name).Dispose();
                progress?.Report(++done / (double)total);
            }
    }

    /// <summary>Frees the cache and, when owned, the task vectors.</summary>
    public void Dispose()
    {
        foreach (var t in _cache.Values) t.Dispose();
        _cache.Clear();
        if (_ownsTaskVectors)
            foreach (var tv in _taskVectors) tv.Dispose();
    }
}
