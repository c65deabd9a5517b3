using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.TaskVectors.Composition;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Runtime;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Cli.Bench;

/// <summary>
/// The composition engine against a plain forward of the same vision tower, in one process, side by
/// side: task-level composed forward, per-sample composed forward with each strategy (materialize in the fused
/// CPU kernels and in tiles of library products, and branch), and a training step (forward and backward to
/// per-sample coefficients) next to the same backward through the plain tower. Random weights and task vectors.
/// </summary>
internal static class CompositionBenchmark
{
    public sealed record Timing(string Name, double Seconds, double RatioToPlain, long PeakBytes);

    public sealed record BatchResult(int Batch, IReadOnlyList<Timing> Timings, double PerSampleRatio);

    public static JsonObject Run(string architecture, ClipConfig config, int tasks, IReadOnlyList<int> batches, Device device,
        int repeats, long tileBytes, bool includeBranch, TextWriter log, CancellationToken cancellationToken)
    {
        var vision = config.Vision;
        log.WriteLine($"{architecture}: {vision.Layers} layers, width {vision.Width}, {vision.Tokens} tokens; N = {tasks}; device {device}");
        using var model = ClipModel.CreateRandom(config, seed: 0, withText: false);
        model.To(device);
        // Frozen, as θ0 is in the engine: the plain training step then differentiates to its input only.
        foreach (var p in model.Vision.parameters()) p.requires_grad_(false);
        var shapes = model.Vision.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        var build = Stopwatch.StartNew();
        using var engine = CompositionEngine.Create(model, new RandomTaskVectorSet(shapes, tasks, seed: 1), options: new CompositionEngineOptions
        {
            Device = device, Strategy = PerSampleStrategy.Materialize, TileBytes = tileBytes,
        }, cancellationToken: cancellationToken);
        // Materialize runs in the fused kernels where they apply; the library's tiles are then timed too, for comparison.
        bool fused = engine.UsesFusedKernels;
        log.WriteLine($"engine built in {build.Elapsed.TotalSeconds:F1} s ({engine.ComposedTensorNames.Count} composed tensors, M = {engine.BlockCount})");

        var results = new List<BatchResult>();
        foreach (var batch in batches)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            using var generator = new Generator(2);
            var pixels = randn([batch, 3, vision.ImageSize, vision.ImageSize], generator: generator).to(device);
            var z = (rand([batch, tasks, engine.BlockCount], generator: generator) * 0.3).to(device);
            var zTask = z[0];

            var all = new (string Name, Action Run)[]
            {
                ("plain forward", () => { using var _ = no_grad(); using var o = model.Vision.Encode(pixels, model.Vision.OwnWeights()); }),
                ("task-level composed forward", () => { using var _ = no_grad(); using var o = engine.Forward(pixels, zTask); }),
                (fused ? "per-sample forward, fused kernels" : "per-sample forward, materialize", () => { using var _ = no_grad(); using var o = engine.Forward(pixels, z); }),
                ("per-sample forward, library tiles", () =>
                {
                    using var _ = no_grad();
                    engine.Options.FusedCpuKernels = false;
                    try { using var o = engine.Forward(pixels, z); }
                    finally { engine.Options.FusedCpuKernels = true; }
                }),
                ("per-sample forward, branch", () => { using var _ = no_grad(); using var o = engine.Forward(pixels, z, PerSampleStrategy.Branch); }),
                // The same backward through the plain tower (to the pixels; no weight gradients): what the composed step adds to.
                ("plain training step", () =>
                {
                    using var s = NewDisposeScope();
                    var p = pixels.detach().requires_grad_();
                    var o = model.Vision.Encode(p, model.Vision.OwnWeights());
                    o.ImageEmbeds.square().mean().backward();
                    _ = p.grad!.sum().item<float>();
                }),
                ("per-sample training step", () =>
                {
                    using var s = NewDisposeScope();
                    var zz = z.detach().requires_grad_();
                    var o = engine.Forward(pixels, zz);
                    o.ImageEmbeds.square().mean().backward();
                    _ = zz.grad!.sum().item<float>();
                }),
            };
            var cases = all.Where(c => (includeBranch || !c.Name.EndsWith("branch", StringComparison.Ordinal))
                && (fused || !c.Name.EndsWith("library tiles", StringComparison.Ordinal))).ToArray();
            // Warm up each case once, then alternate the cases so that load on the machine affects them alike.
            var best = cases.Select(_ => double.MaxValue).ToArray();
            var peaks = new long[cases.Length];
            for (int r = -1; r < repeats; r++)
                for (int i = 0; i < cases.Length; i++)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    long before = ProcessMemory.Resident;
                    ProcessMemory.ResetPeak();
                    var watch = Stopwatch.StartNew();
                    cases[i].Run();
                    if (device.type == TorchSharp.DeviceType.CUDA) cuda.synchronize();
                    var seconds = watch.Elapsed.TotalSeconds;
                    if (r >= 0) best[i] = Math.Min(best[i], seconds);
                    peaks[i] = Math.Max(peaks[i], ProcessMemory.Peak - before);
                }
            var timings = cases.Select((c, i) => new Timing(c.Name, best[i], best[i] / best[0], peaks[i])).ToArray();
            var perSample = timings.Where(t => t.Name.StartsWith("per-sample forward", StringComparison.Ordinal)).Min(t => t.RatioToPlain);
            results.Add(new BatchResult(batch, timings, perSample));
            log.WriteLine($"batch {batch}:");
            foreach (var t in timings)
                log.WriteLine($"  {t.Name,-34} {t.Seconds * 1000,9:F1} ms  {t.RatioToPlain,6:F2}×  peak +{t.PeakBytes / 1e6:F0} MB");
        }

        var json = new JsonObject
        {
            ["benchmark"] = "composition",
            ["arch"] = architecture,
            ["tasks"] = tasks,
            ["device"] = device.ToString(),
            ["threads"] = get_num_threads(),
            ["tile_bytes"] = tileBytes,
            ["branch_measured"] = includeBranch,
            ["batches"] = new JsonArray(results.Select(r => (JsonNode)new JsonObject
            {
                ["batch"] = r.Batch,
                ["per_sample_ratio"] = r.PerSampleRatio,
                ["timings"] = new JsonObject(r.Timings.Select(t => KeyValuePair.Create(t.Name, (JsonNode?)new JsonObject
                {
                    ["seconds"] = t.Seconds, ["ratio"] = t.RatioToPlain, ["peak_bytes"] = t.PeakBytes,
                }))),
            }).ToArray()),
            // The worst batch size: the goal must hold for each.
            ["per_sample_ratio"] = results.Max(r => r.PerSampleRatio),
        };
        return json;
    }
}
