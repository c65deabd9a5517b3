using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Merging;
using Microsoft.ML.TaskVectors.Runtime;
using Microsoft.ML.TaskVectors.TaskVectors;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Cli.Bench;

/// <summary>
/// Merging N random task vectors of a ViT-sized model against simply reading the N+1 files: time,
/// and peak resident memory above what the process held before the merge. Two reads are timed:
/// the library's reader as a user calls it (each tensor of each file in turn, the baseline of the
/// goal), and the byte-level merge's own reading without the merge (chunks of every file on every
/// core), the floor of any merge that reads each input once.
/// </summary>
internal static class MergeBenchmark
{
    public sealed record MethodResult(string Method, double Seconds, double PrepareSeconds, double RatioToRead, double RatioToChunkedRead, long PeakBytes, double PeakOverCheckpoint,
        double PairedRatioToRead);

    public sealed record Result(int Tasks, long Parameters, long CheckpointBytes, double ReadSeconds, double ChunkedReadSeconds, IReadOnlyList<MethodResult> Methods, string Ranking, int Repeats, string Device);

    /// <summary>The measurement of reading the files as the byte-level merge does, without merging.</summary>
    public const string ChunkedRead = "read-chunks";

    /// <summary>
    /// Runs the benchmark: each measurement (reading the files, then each method) in a fresh child
    /// process, as a user's command would run, with the files already in the page cache. The
    /// measurements run in <paramref name="repeats"/> rounds, each round every measurement once, so
    /// that a slow spell of the machine falls on the read and the merges alike. Each keeps its fastest
    /// time (with the largest peak memory seen); a method's ratio to the read is given both from the
    /// fastest times and as the median over the rounds of its time over the same round's read.
    /// </summary>
    /// <param name="device">Where TSV-M and WUDI compute (the other methods stream on the CPU); see <see cref="MergeMethodOptions.Device"/>.</param>
    public static Result Run(string workDirectory, int tasks, IReadOnlyList<TensorInfo> layout, IReadOnlyList<string> methods, string ranking, int repeats, string device,
        Func<string, string[], Measurement> runChild, TextWriter log, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(repeats, 1);
        EnsureCheckpoints(workDirectory, tasks, layout, log, cancellationToken);
        long checkpointBytes = layout.Sum(t => t.ByteLength);
        string[] Args(string what) => ["--work", workDirectory, "--tasks", tasks.ToString(CultureInfo.InvariantCulture), "--ranking", ranking, "--device", device, "--measure", what];
        var measured = new[] { "read", ChunkedRead }.Concat(methods).ToArray();
        var runs = measured.ToDictionary(w => w, _ => new List<Measurement>());
        runChild("read", Args("read")); // warms the page cache
        for (int round = 1; round <= repeats; round++)
        {
            foreach (var what in measured)
            {
                cancellationToken.ThrowIfCancellationRequested();
                runs[what].Add(runChild(what, Args(what)));
            }

            log.WriteLine($"round {round}/{repeats}: " + string.Join(", ", measured.Select(w => $"{w} {runs[w][^1].Seconds:F2} s")));
        }

        Measurement Best(string what) => runs[what].MinBy(r => r.Seconds)! with { PeakBytes = runs[what].Max(r => r.PeakBytes) };
        var read = Best("read");
        log.WriteLine($"read {tasks + 1} files ({(tasks + 1) * checkpointBytes / 1e9:F2} GB): {read.Seconds:F2} s, peak +{read.PeakBytes / 1e6:F0} MB");
        var chunked = Best(ChunkedRead);
        log.WriteLine($"read them in chunks on every core: {chunked.Seconds:F2} s, peak +{chunked.PeakBytes / 1e6:F0} MB");
        var results = new List<MethodResult>();
        foreach (var name in methods)
        {
            var m = Best(name);
            double paired = Median(runs[name].Zip(runs["read"], (merge, plain) => merge.Seconds / plain.Seconds));
            var r = new MethodResult(name, m.Seconds, m.PrepareSeconds, m.Seconds / read.Seconds, m.Seconds / chunked.Seconds, m.PeakBytes, m.PeakBytes / (double)checkpointBytes, paired);
            results.Add(r);
            string prepare = m.PrepareSeconds > 0 ? $", {m.PrepareSeconds:F2} s of it before writing" : "";
            log.WriteLine($"{name}: {m.Seconds:F2} s{prepare} ({r.RatioToRead:F2}× read, {r.RatioToChunkedRead:F2}× chunked read; "
                + $"{paired:F2}× the same round's read, median), peak +{m.PeakBytes / 1e6:F0} MB ({r.PeakOverCheckpoint:F2}× one checkpoint)");
        }
        return new Result(tasks, layout.Sum(t => t.ElementCount), checkpointBytes, read.Seconds, chunked.Seconds, results, ranking, repeats,
            ComputeDevice.Resolve(device, requireRequested: true).ToString());
    }

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    /// <summary>
    /// Time, peak resident memory above the process's size before the work, and for a merge the time
    /// until it began writing (its "prepare" phase: TIES's ranking, for one; 0 when it has none).
    /// </summary>
    public sealed record Measurement(double Seconds, long PeakBytes, double PrepareSeconds = 0);

    /// <summary>
    /// One measurement in this process: "read" (read the N+1 files tensor by tensor), <see cref="ChunkedRead"/>
    /// (read them as the byte-level merge does) or a merge method's name (TIES ranking "global" or "per-tensor").
    /// </summary>
    public static Measurement Measure(string workDirectory, int tasks, string what, string ranking, string device, CancellationToken cancellationToken)
    {
        var basePath = Path.Combine(workDirectory, "base.safetensors");
        var finetuned = Enumerable.Range(0, tasks).Select(t => Path.Combine(workDirectory, $"ft{t}.safetensors")).ToArray();
        var output = Path.Combine(workDirectory, "merged.safetensors");
        using (var warm = zeros(1)) { } // load libtorch before the baseline
        long before = ProcessMemory.Resident;
        ProcessMemory.ResetPeak();
        var watch = Stopwatch.StartNew();
        double prepared = 0;
        if (what == "read")
            ReadAll(finetuned.Prepend(basePath), cancellationToken);
        else
        {
            using var @base = Checkpoint.Open(basePath);
            var fts = finetuned.Select(Checkpoint.Open).ToArray();
            try
            {
                using var pool = TaskVectorPool.FromCheckpoints(@base, fts);
                if (what == ChunkedRead)
                {
                    using var files = MergeInputFiles.TryOpen(@base, pool) ?? throw new InvalidOperationException("The benchmark's files do not take the byte-level path.");
                    foreach (var name in pool.TensorNames)
                        files.ReadChunks(name, (_, _, _) => cancellationToken.ThrowIfCancellationRequested());
                }
                else
                {
                    var options = new MergeMethodOptions
                    {
                        Ranking = ranking == "per-tensor" ? TiesRanking.PerTensor : TiesRanking.Global,
                        Device = device,
                        RequireDevice = true,
                    };
                    var phases = new SynchronousProgress<MergeProgress>(p =>
                    {
                        if (p.Phase == "prepare" && p.Fraction >= 1) prepared = watch.Elapsed.TotalSeconds;
                    });
                    ModelMerger.MergeToFile(@base, pool, MergeMethods.Create(what, options), output, phases, cancellationToken);
                }
            }
            finally
            {
                foreach (var f in fts) f.Dispose();
            }
        }
        var result = new Measurement(watch.Elapsed.TotalSeconds, Math.Max(0, ProcessMemory.Peak - before), prepared);
        File.Delete(output);
        return result;
    }

    private static void ReadAll(IEnumerable<string> files, CancellationToken cancellationToken)
    {
        foreach (var file in files)
        {
            using var c = Checkpoint.Open(file);
            foreach (var t in c.Tensors)
            {
                cancellationToken.ThrowIfCancellationRequested();
                c.ReadFloat32(t.Name).Dispose();
            }
        }
    }

    private static void EnsureCheckpoints(string dir, int tasks, IReadOnlyList<TensorInfo> layout, TextWriter log,
        CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(dir);
        var basePath = Path.Combine(dir, "base.safetensors");
        var finetuned = Enumerable.Range(0, tasks).Select(t => Path.Combine(dir, $"ft{t}.safetensors")).ToArray();
        long seed = 0;
        foreach (var path in finetuned.Prepend(basePath))
        {
            if (Fits(path, layout)) { seed++; continue; }
            log.WriteLine($"writing random checkpoint {path}");
            bool isBase = path == basePath;
            using var writer = SafetensorsWriter.Create(path, layout);
            using var generator = new Generator((ulong)(seed++ + 1));
            foreach (var info in layout)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                // Fine-tuned = base + small noise, so task vectors look like real ones (small, dense).
                using var baseGenerator = new Generator(StableHash.Seed(0, info.Name));
                var value = randn(info.Shape, generator: baseGenerator).mul_(0.02);
                if (!isBase) value.add_(randn(info.Shape, generator: generator).mul_(1e-3));
                writer.Write(info.Name, value);
            }
            writer.Commit();
        }
    }

    private static bool Fits(string path, IReadOnlyList<TensorInfo> layout)
    {
        if (!File.Exists(path)) return false;
        try
        {
            using var c = SafetensorsReader.Open(path);
            return c.Tensors.Count == layout.Count && c.Tensors.Zip(layout).All(p => p.First.Name == p.Second.Name && p.First.HasSameLayout(p.Second));
        }
        catch (CheckpointFormatException)
        {
            return false;
        }
    }

    public static string ToJson(Result r) => JsonSerializer.Serialize(new
    {
        benchmark = "merge",
        tasks = r.Tasks,
        parameters = r.Parameters,
        checkpoint_bytes = r.CheckpointBytes,
        read_seconds = r.ReadSeconds,
        chunked_read_seconds = r.ChunkedReadSeconds,
        ties_ranking = r.Ranking,
        device = r.Device,
        repeats = r.Repeats,
        methods = r.Methods.ToDictionary(m => m.Method, m => new
        {
            seconds = m.Seconds,
            prepare_seconds = m.PrepareSeconds,
            ratio_to_read = m.RatioToRead,
            ratio_to_chunked_read = m.RatioToChunkedRead,
            paired_ratio_to_read = m.PairedRatioToRead,
            peak_bytes = m.PeakBytes,
            peak_over_checkpoint = m.PeakOverCheckpoint,
        }),
        threads = get_num_threads(),
        processors = Environment.ProcessorCount,
        machine = string.Create(CultureInfo.InvariantCulture, $"{System.Runtime.InteropServices.RuntimeInformation.OSDescription}, {Environment.ProcessorCount} cores"),
    });
}
