using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Cli.Bench;

namespace Microsoft.ML.TaskVectors.Tests.Cli;

public class MergeBenchmarkTests
{
    [Test]
    public void MeasurementsRunInRounds_AndRatiosComeFromTheFastestTimesAndFromEachRound()
    {
        // Scripted times: the machine is slow in rounds 2 and 3, for the read and the merge alike.
        var script = new Dictionary<string, double[]>
        {
            ["read"] = [9.0, 1.0, 2.0, 2.0], // the first is the page-cache warm-up, not timed
            [MergeBenchmark.ChunkedRead] = [0.5, 0.9, 0.9],
            ["ties"] = [2.5, 3.0, 3.0],
        };
        var calls = new List<string>();
        MergeBenchmark.Measurement Child(string what, string[] args)
        {
            Assert.That(args, Does.Contain("--measure").And.Contain(what));
            int k = calls.Count(c => c == what);
            calls.Add(what);
            return new MergeBenchmark.Measurement(script[what][k], PeakBytes: 1000 * (k + 1), PrepareSeconds: what == "ties" ? 0.1 * (k + 1) : 0);
        }

        using var dir = new TempDirectory();
        var layout = new[] { new TensorInfo("w", TensorDType.F32, [4, 4]) };
        var log = new StringWriter();
        var r = MergeBenchmark.Run(dir.Path, 2, layout, ["ties"], "global", 3, "cpu", Child, log, default);

        string[] round = ["read", MergeBenchmark.ChunkedRead, "ties"];
        Assert.That(calls, Is.EqualTo(new[] { "read" }.Concat(round).Concat(round).Concat(round).ToArray()), "a warm-up read, then rounds");
        Assert.That(r.ReadSeconds, Is.EqualTo(1.0));
        Assert.That(r.ChunkedReadSeconds, Is.EqualTo(0.5));
        var ties = r.Methods.Single();
        Assert.That(ties.Seconds, Is.EqualTo(2.5));
        Assert.That(ties.PrepareSeconds, Is.EqualTo(0.1).Within(1e-12), "the fastest run's own prepare time");
        Assert.That(ties.PeakBytes, Is.EqualTo(3000), "the largest peak seen");
        Assert.That(ties.RatioToRead, Is.EqualTo(2.5));
        Assert.That(ties.RatioToChunkedRead, Is.EqualTo(5.0));
        Assert.That(ties.PairedRatioToRead, Is.EqualTo(1.5), "median of 2.5, 1.5 and 1.5");
        Assert.That(log.ToString(), Does.Contain("round 3/3: read 2.00 s, read-chunks 0.90 s, ties 3.00 s"));
        Assert.That(MergeBenchmark.ToJson(r), Does.Contain("\"paired_ratio_to_read\":1.5"));
    }
}
