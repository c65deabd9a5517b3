using Microsoft.ML.TaskVectors.Runtime;
using System.CommandLine;
using System.Reflection;
using Microsoft.ML.TaskVectors.Cli.Commands;
using Spectre.Console;

namespace Microsoft.ML.TaskVectors.Cli;

/// <summary>Entry point of the <c>taskvectors</c> command-line tool.</summary>
public static class Program
{
    public static int Main(string[] args)
    {
        NativeHeap.ConfigureForTensorWorkloads();
        try
        {
            // The default handler prints stack traces; failures are reported by ReportError instead.
            return CreateRootCommand().Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e)
        {
            return ReportError(e);
        }
    }

    /// <summary>The command tree: one line per command.</summary>
    internal static RootCommand CreateRootCommand()
    {
        var root = new RootCommand("taskvectors: task-vector composition of CLIP models with ML.NET and TorchSharp.");
        root.Subcommands.Add(MergeCommand.Create());
        root.Subcommands.Add(InspectCommand.Create());
        root.Subcommands.Add(EmbedCommand.Create());
        root.Subcommands.Add(ExportOnnxCommand.Create());
        root.Subcommands.Add(FinetuneCommand.Create());
        root.Subcommands.Add(ComposeCommand.Create());
        root.Subcommands.Add(EvalCommand.Create());
        root.Subcommands.Add(DemoCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(DoctorCommand.Create());
        return root;
    }

    /// <summary>One red line on stderr and exit code 1; the full exception only with TASKVECTORS_DEBUG=1.</summary>
    private static int ReportError(Exception e)
    {
        if (Environment.GetEnvironmentVariable("TASKVECTORS_DEBUG") == "1")
        {
            AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) }).WriteException(e);
            return 1;
        }
        while (e is AggregateException { InnerExceptions.Count: 1 } or TargetInvocationException { InnerException: not null })
            e = e.InnerException!;
        if (e is OperationCanceledException)
        {
            Console.Error.WriteLine("cancelled");
            return 130;
        }
        // Written directly, not through Spectre, which wraps long lines at the console width.
        string message = "error: " + e.Message.ReplaceLineEndings(" ").Trim();
        bool color = !Console.IsErrorRedirected && Environment.GetEnvironmentVariable("NO_COLOR") is null;
        Console.Error.WriteLine(color ? $"\u001b[31m{message}\u001b[0m" : message);
        return 1;
    }
}
