using System.Text;
using Microsoft.ML.TaskVectors.Checkpoints;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>
/// Where a composition training run stood after a whole epoch, in one file written atomically: the live state
/// tensors, the best-so-far tensors, the optimiser's moments and step counts, the step (which fixes the learning-rate
/// schedule and the per-step noise seeds), and the epoch losses and scores. A run that finds its own checkpoint
/// continues from it and ends bit for bit where an uninterrupted run would.
/// </summary>
internal sealed class TrainingCheckpoint
{
    /// <summary>The file's name inside the checkpoint directory.</summary>
    public const string FileName = "composition-training.ckpt";

    private const string Magic = "taskvectors/composition-training-checkpoint/1";

    /// <summary>Completed epochs.</summary>
    public required int Epoch { get; init; }

    /// <summary>Optimiser steps taken.</summary>
    public required long Step { get; init; }

    /// <summary>Mean training loss of each completed epoch.</summary>
    public required List<double> Losses { get; init; }

    /// <summary>Selection score of each completed epoch (empty without selection splits).</summary>
    public required List<double> Scores { get; init; }

    /// <summary>The best epoch's score (NaN without selection splits).</summary>
    public required double BestScore { get; init; }

    /// <summary>The best epoch (1-based).</summary>
    public required int BestEpoch { get; init; }

    /// <summary>Copies of the best epoch's state tensors, owned by the caller once loaded.</summary>
    public required Dictionary<string, Tensor> Best { get; init; }

    /// <summary>The checkpoint file of <paramref name="directory"/>.</summary>
    public static string PathIn(string directory) => Path.Combine(Path.GetFullPath(directory), FileName);

    /// <summary>Writes the checkpoint atomically; a crash while writing leaves the previous epoch's file.</summary>
    public static void Save(string directory, string method, string fingerprint, TrainingCheckpoint checkpoint,
        IReadOnlyDictionary<string, Tensor> live, OptimizerHelper optimizer)
    {
        AtomicFile.Write(PathIn(directory), stream =>
        {
            using var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
            writer.Write(Magic);
            writer.Write(method);
            writer.Write(fingerprint);
            writer.Write(checkpoint.Epoch);
            writer.Write(checkpoint.Step);
            WriteDoubles(writer, checkpoint.Losses);
            WriteDoubles(writer, checkpoint.Scores);
            writer.Write(checkpoint.BestScore);
            writer.Write(checkpoint.BestEpoch);
            WriteTensors(writer, live);
            WriteTensors(writer, checkpoint.Best);
            optimizer.save_state_dict(writer);
            writer.Flush();
        });
    }

    /// <summary>
    /// Reads the checkpoint of <paramref name="directory"/> when there is one: loads the live tensors and the optimiser
    /// state in place and returns the rest; null when the directory holds no checkpoint.
    /// </summary>
    /// <exception cref="InvalidOperationException">The checkpoint belongs to another method or other options; the message names the directory.</exception>
    /// <exception cref="InvalidDataException">The file is not a readable checkpoint.</exception>
    public static TrainingCheckpoint? TryLoad(string directory, string method, string fingerprint,
        IReadOnlyDictionary<string, Tensor> live, OptimizerHelper optimizer)
    {
        var path = PathIn(directory);
        if (!File.Exists(path)) return null;
        using var stream = File.OpenRead(path);
        using var reader = new BinaryReader(stream, Encoding.UTF8);
        string savedMethod, savedFingerprint;
        try
        {
            if (reader.ReadString() != Magic) throw new InvalidDataException($"'{path}' is not a composition training checkpoint.");
            savedMethod = reader.ReadString();
            savedFingerprint = reader.ReadString();
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException($"'{path}' is not a composition training checkpoint (it ends early).", e);
        }
        if (savedMethod != method)
            throw new InvalidOperationException($"The checkpoint directory '{directory}' holds a {savedMethod} checkpoint, not {method}; choose another CheckpointDirectory or delete {FileName}.");
        if (savedFingerprint != fingerprint)
            throw new InvalidOperationException($"The checkpoint directory '{directory}' holds a {method} checkpoint for other options, tasks or model ({Difference(savedFingerprint, fingerprint)}); choose another CheckpointDirectory or delete {FileName}.");

        var best = new Dictionary<string, Tensor>();
        try
        {
            int epoch = reader.ReadInt32();
            long step = reader.ReadInt64();
            var losses = ReadDoubles(reader);
            var scores = ReadDoubles(reader);
            double bestScore = reader.ReadDouble();
            int bestEpoch = reader.ReadInt32();
            ReadTensors(reader, live, path);
            foreach (var (name, tensor) in live) best[name] = tensor.detach().clone().DetachFromDisposeScope();
            ReadTensors(reader, best, path);
            optimizer.load_state_dict(reader);
            return new TrainingCheckpoint { Epoch = epoch, Step = step, Losses = losses, Scores = scores, BestScore = bestScore, BestEpoch = bestEpoch, Best = best };
        }
        catch (Exception e) when (e is EndOfStreamException or ArgumentException or InvalidDataException)
        {
            foreach (var t in best.Values) t.Dispose();
            throw new InvalidDataException($"The composition training checkpoint '{path}' cannot be read: {e.Message}", e);
        }
    }

    private static void WriteDoubles(BinaryWriter writer, IReadOnlyList<double> values)
    {
        writer.Write(values.Count);
        foreach (var v in values) writer.Write(v);
    }

    private static List<double> ReadDoubles(BinaryReader reader)
    {
        int count = reader.ReadInt32();
        if (count < 0) throw new InvalidDataException($"negative count {count}");
        var values = new List<double>(count);
        for (int i = 0; i < count; i++) values.Add(reader.ReadDouble());
        return values;
    }

    private static void WriteTensors(BinaryWriter writer, IReadOnlyDictionary<string, Tensor> tensors)
    {
        using var scope = NewDisposeScope();
        writer.Write(tensors.Count);
        foreach (var (name, tensor) in tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            writer.Write(name);
            tensor.detach().Save(writer);
        }
    }

    private static void ReadTensors(BinaryReader reader, IReadOnlyDictionary<string, Tensor> into, string path)
    {
        int count = reader.ReadInt32();
        if (count != into.Count) throw new InvalidDataException($"it holds {count} state tensors, the model has {into.Count}");
        for (int i = 0; i < count; i++)
        {
            var name = reader.ReadString();
            if (!into.TryGetValue(name, out var tensor)) throw new InvalidDataException($"it holds a tensor '{name}' the model does not have");
            // Load copies in place (under no_grad), so parameters keep their identity for the optimiser.
            tensor.Load(reader);
        }
    }

    /// <summary>The first differing entry of two fingerprints (a path into the JSON), for the mismatch message.</summary>
    private static string Difference(string saved, string current)
    {
        try
        {
            return First(System.Text.Json.Nodes.JsonNode.Parse(saved), System.Text.Json.Nodes.JsonNode.Parse(current), "") ?? "fingerprints differ";
        }
        catch (System.Text.Json.JsonException)
        {
            return "fingerprints differ";
        }

        static string? First(System.Text.Json.Nodes.JsonNode? a, System.Text.Json.Nodes.JsonNode? b, string path)
        {
            if (a is System.Text.Json.Nodes.JsonObject x && b is System.Text.Json.Nodes.JsonObject y)
            {
                foreach (var key in x.Select(kv => kv.Key).Union(y.Select(kv => kv.Key)))
                    if (First(x[key], y[key], path.Length == 0 ? key : path + "." + key) is { } found) return found;
                return null;
            }
            var (p, q) = (a?.ToJsonString() ?? "none", b?.ToJsonString() ?? "none");
            return p == q ? null : $"{path}: saved {Shorten(p)}, now {Shorten(q)}";
        }
    }

    private static string Shorten(string s) => s.Length <= 80 ? s : s[..77] + "...";
}
