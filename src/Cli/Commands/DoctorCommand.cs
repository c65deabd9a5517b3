using System.CommandLine;
using Microsoft.ML.TaskVectors.Runtime;
using Spectre.Console;

namespace Microsoft.ML.TaskVectors.Cli.Commands;

// Inside Microsoft.ML.*, the namespace Microsoft.ML.Command would hide System.CommandLine.Command.
using Command = System.CommandLine.Command;

/// <summary><c>taskvectors doctor</c>: what the tool runs on, and whether TorchSharp and ONNX Runtime load.</summary>
internal static class DoctorCommand
{
    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "Print the report as JSON." };
        var command = new Command("doctor",
            "Report .NET, ML.NET, TorchSharp/libtorch, ONNX Runtime, devices and the Linux libstdc++ compatibility step. " +
            "Exits with 1 when TorchSharp or ONNX Runtime cannot be loaded.")
        {
            json,
        };
        command.SetAction(result =>
        {
            var report = EnvironmentReport.Collect();
            if (result.GetValue(json))
                Console.WriteLine(report.ToJson());
            else
                PrintTable(report);
            return report.IsHealthy ? 0 : 1;
        });
        return command;
    }

    private static void PrintTable(EnvironmentReport report)
    {
        var table = new Table().Title("taskvectors doctor").AddColumns("component", "status");
        foreach (var (label, value) in report.ToDisplayRows())
            table.AddRow(Markup.Escape(label), Highlight(label, value));
        AnsiConsole.Write(table);
    }

    // Problems in red, the compatibility step's outcome in yellow (worth knowing, not an error).
    private static string Highlight(string label, string value)
    {
        string text = Markup.Escape(value);
        if (label.EndsWith("error", StringComparison.Ordinal) || value.StartsWith("unavailable", StringComparison.Ordinal) || value.StartsWith("not applied", StringComparison.Ordinal))
            return $"[red]{text}[/]";
        if (value.StartsWith("applied", StringComparison.Ordinal))
            return $"[yellow]{text}[/]";
        return text;
    }
}
