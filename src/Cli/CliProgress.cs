using Microsoft.ML.TaskVectors.Runtime;
using Spectre.Console;

namespace Microsoft.ML.TaskVectors.Cli;

/// <summary>Progress bars on standard error, one per phase of long work; silent when it is not a terminal.</summary>
internal static class CliProgress
{
    /// <summary>Runs <paramref name="work"/>, which reports (phase, fraction) pairs; each new phase gets its own bar.</summary>
    public static T Run<T>(Func<IProgress<(string Phase, double Fraction)>, T> work)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        if (Console.IsErrorRedirected || !console.Profile.Capabilities.Interactive)
            return work(new NullProgress());
        T result = default!;
        console.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(ctx =>
            {
                var bars = new Dictionary<string, ProgressTask>();
                result = work(new Reporter(ctx, bars));
                foreach (var bar in bars.Values) bar.Value = bar.MaxValue;
            });
        return result;
    }

    /// <summary>A fraction-only progress for one phase of <paramref name="progress"/>.</summary>
    public static IProgress<double> Phase(this IProgress<(string Phase, double Fraction)> progress, string phase) =>
        new SynchronousProgress<double>(f => progress.Report((phase, f)));

    private sealed class Reporter(ProgressContext ctx, Dictionary<string, ProgressTask> bars) : IProgress<(string Phase, double Fraction)>
    {
        public void Report((string Phase, double Fraction) value)
        {
            if (!bars.TryGetValue(value.Phase, out var bar))
                bars[value.Phase] = bar = ctx.AddTask(value.Phase, maxValue: 1.0);
            bar.Value = Math.Clamp(value.Fraction, 0, 1);
        }
    }

    private sealed class NullProgress : IProgress<(string, double)>
    {
        public void Report((string, double) value) { }
    }
}
