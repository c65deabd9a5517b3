using System.CommandLine;
using Microsoft.ML.TaskVectors.Cli.Demo;
using Spectre.Console;

namespace Microsoft.ML.TaskVectors.Cli.Commands;

// Inside Microsoft.ML.*, the namespace Microsoft.ML.Command would hide System.CommandLine.Command.
using Command = System.CommandLine.Command;

/// <summary>
/// <c>taskvectors demo</c>: fine-tune a tiny encoder on generated tasks, merge the task vectors with
/// every data-free method and print per-task accuracy (see <see cref="MergeDemo"/>).
/// </summary>
internal static class DemoCommand
{
    /// <summary>Creates the command.</summary>
    public static Command Create()
    {
        var defaults = new MergeDemoOptions();
        var tasks = new Option<int>("--tasks") { Description = "Number of synthetic tasks (2 … 8).", DefaultValueFactory = _ => defaults.Tasks };
        tasks.Validators.Add(r =>
        {
            int n = r.GetValueOrDefault<int>();
            if (n is < 2 or > 8) r.AddError($"--tasks must be between 2 and 8 (got {n}).");
        });
        var seed = new Option<long>("--seed") { Description = "Seed of data, weights, training and DARE masks; the same seed repeats the run exactly.", DefaultValueFactory = _ => defaults.Seed };
        var work = new Option<string?>("--work") { Description = "Folder to keep checkpoints and results in (default: a temporary folder whose checkpoints are deleted)." };
        var steps = new Option<int>("--steps") { Description = "Fine-tuning steps per task.", DefaultValueFactory = _ => defaults.FineTuneSteps };
        steps.Validators.Add(r =>
        {
            int n = r.GetValueOrDefault<int>();
            if (n < 1) r.AddError($"--steps must be at least 1 (got {n}).");
        });

        var command = new Command("demo", "Fine-tune a tiny encoder on generated tasks, build task vectors, run every data-free merge and report per-task accuracy.")
        {
            tasks, seed, work, steps,
        };
        command.SetAction((result, cancellationToken) =>
        {
            var options = new MergeDemoOptions
            {
                Tasks = result.GetValue(tasks),
                Seed = result.GetValue(seed),
                WorkDirectory = result.GetValue(work),
                FineTuneSteps = result.GetValue(steps),
            };
            var demo = CliProgress.Run(progress => MergeDemo.Run(options, progress, cancellationToken));
            Print(demo);
            return Task.FromResult(0);
        });
        return command;
    }

    private static void Print(MergeDemoResult demo)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) });
        // Redirected output would wrap at 80 columns; the table needs a little more.
        if (Console.IsOutputRedirected) console.Profile.Width = Math.Max(console.Profile.Width, 120);
        console.Write(MergeDemo.ToTable(demo));
        // Plain lines (not Spectre) so that long paths are never wrapped.
        var output = Console.Out;
        output.WriteLine(MergeDemo.Summary(demo));
        output.WriteLine($"Results: {demo.ResultsMarkdownPath}");
        output.WriteLine($"         {demo.ResultsJsonPath}");
        output.WriteLine(demo.CheckpointsKept
            ? $"Checkpoints kept in {demo.WorkDirectory}."
            : "Checkpoints deleted (use --work DIR to keep them).");
        output.WriteLine($"Run time: {demo.Elapsed.TotalSeconds:F1} s.");
    }
}
