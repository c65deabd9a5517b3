using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.TaskVectors;
using Spectre.Console;

namespace Microsoft.ML.TaskVectors.Cli.Commands;

// Inside Microsoft.ML.*, the namespace Microsoft.ML.Command would hide System.CommandLine.Command.
using Command = System.CommandLine.Command;

/// <summary><c>taskvectors inspect</c>: the tensors of checkpoints and, against a base, their task vectors' statistics.</summary>
internal static class InspectCommand
{
    public static Command Create()
    {
        var files = new Argument<string[]>("files") { Description = "Checkpoints (.safetensors files, shard indexes or model folders).", Arity = ArgumentArity.OneOrMore };
        var @base = new Option<string?>("--base") { Description = "Base checkpoint: also report task-vector norms, sparsity and the cosine-similarity matrix." };
        var json = new Option<bool>("--json") { Description = "Print JSON instead of tables." };
        var energy = new Option<bool>("--energy")
        {
            Description = "With --base: for each 2-D tensor, how many singular values hold 50 %, 90 % and 99 % of the task vector's energy.",
        };
        var selection = new TensorSelectionOptions();
        var command = new Command("inspect", "List the tensors of checkpoints; with --base, compare their task vectors.") { files, @base, json, energy };
        selection.AddTo(command);
        command.SetAction((result, cancellationToken) =>
        {
            if (result.GetValue(energy) && result.GetValue(@base) is null)
                throw new ArgumentException("--energy needs --base: singular values are those of the task vectors.");
            Run(result.GetValue(files)!, result.GetValue(@base), selection.Read(result), result.GetValue(json), result.GetValue(energy), cancellationToken);
            return Task.FromResult(0);
        });
        return command;
    }

    /// <summary>Singular values needed for 50 %, 90 % and 99 % of one 2-D tensor's energy, out of its rank.</summary>
    private sealed record EnergyRow(string Task, string Tensor, int Rank, int K50, int K90, int K99);

    public static void Run(IReadOnlyList<string> paths, string? basePath, TensorFilter filter, bool json, bool energy, CancellationToken cancellationToken)
    {
        var checkpoints = new List<Checkpoint>();
        try
        {
            foreach (var p in paths) checkpoints.Add(Checkpoint.Open(p));
            TaskVectorStatistics? stats = null;
            var energyRows = new List<EnergyRow>();
            if (basePath is not null)
            {
                using var @base = Checkpoint.Open(basePath);
                var names = TensorSelectionOptions.TaskNames(paths);
                using var pool = new TaskVectorPool(checkpoints.Select((c, i) => TaskVector.FromCheckpoints(@base, c, filter, names[i])).ToArray());
                stats = CliProgress.Run(progress =>
                {
                    var s = TaskVectorStatistics.Compute(pool, progress: progress.Phase("Statistics"), cancellationToken: cancellationToken);
                    if (energy) energyRows.AddRange(Energy(pool, progress, cancellationToken));
                    return s;
                });
            }
            if (json) PrintJson(checkpoints, stats, energyRows);
            else PrintTables(checkpoints, stats, energyRows);
        }
        finally
        {
            foreach (var c in checkpoints) c.Dispose();
        }
    }

    private static IEnumerable<EnergyRow> Energy(TaskVectorPool pool, IProgress<(string, double)> progress, CancellationToken cancellationToken)
    {
        var matrices = pool.Tensors.Where(t => t.Shape.Length == 2).Select(t => t.Name).ToArray();
        int done = 0;
        foreach (var name in matrices)
            for (int task = 0; task < pool.Count; task++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var cumulative = TaskVectorStatistics.CumulativeSingularValueEnergy(pool, task, name);
                int K(double fraction) => Array.FindIndex(cumulative, e => e >= fraction - 1e-12) + 1;
                yield return new EnergyRow(pool.TaskNames[task], name, cumulative.Length, K(0.5), K(0.9), K(0.99));
                progress.Report(("Singular values", ++done / (double)(matrices.Length * pool.Count)));
            }
    }

    // Every cell is markup to Spectre.Console: text from files (names, shapes such as "[768, 3072]") is escaped.
    private static void PrintTables(List<Checkpoint> checkpoints, TaskVectorStatistics? stats, List<EnergyRow> energyRows)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) });
        foreach (var c in checkpoints)
        {
            var table = new Table().Title(Markup.Escape(c.Location)).AddColumns("tensor", "dtype", "shape", "parameters");
            foreach (var t in c.Tensors)
                table.AddRow(Markup.Escape(t.Name), t.DType.ToSafetensorsName(), Markup.Escape(t.ShapeText), t.ElementCount.ToString("N0", CultureInfo.InvariantCulture));
            table.Caption($"{c.Tensors.Count} tensors, {c.Tensors.Sum(t => t.ElementCount):N0} parameters");
            console.Write(table);
        }
        if (stats is null) return;
        var summary = new Table().Title("task vectors").AddColumns("task", "L2 norm", "sparsity");
        for (int i = 0; i < stats.TaskNames.Count; i++)
            summary.AddRow(Markup.Escape(stats.TaskNames[i]), stats.Norms[i].ToString("G6", CultureInfo.InvariantCulture), stats.Sparsity[i].ToString("P2", CultureInfo.InvariantCulture));
        console.Write(summary);
        var cosine = new Table().Title("cosine similarity").AddColumn("");
        foreach (var name in stats.TaskNames) cosine.AddColumn(Markup.Escape(name));
        for (int i = 0; i < stats.TaskNames.Count; i++)
            cosine.AddRow(new[] { Markup.Escape(stats.TaskNames[i]) }
                .Concat(Enumerable.Range(0, stats.TaskNames.Count).Select(j => stats.CosineSimilarity[i, j].ToString("F4", CultureInfo.InvariantCulture))).ToArray());
        console.Write(cosine);
        if (energyRows.Count == 0) return;
        var energyTable = new Table().Title("singular values holding 50 % / 90 % / 99 % of the energy").AddColumns("tensor", "task", "rank", "50 %", "90 %", "99 %");
        foreach (var r in energyRows)
            energyTable.AddRow(Markup.Escape(r.Tensor), Markup.Escape(r.Task), r.Rank.ToString(CultureInfo.InvariantCulture),
                r.K50.ToString(CultureInfo.InvariantCulture), r.K90.ToString(CultureInfo.InvariantCulture), r.K99.ToString(CultureInfo.InvariantCulture));
        console.Write(energyTable);
    }

    private static void PrintJson(List<Checkpoint> checkpoints, TaskVectorStatistics? stats, List<EnergyRow> energyRows)
    {
        var n = stats?.TaskNames.Count ?? 0;
        var document = new
        {
            checkpoints = checkpoints.Select(c => new
            {
                path = c.Location,
                tensors = c.Tensors.Select(t => new { name = t.Name, dtype = t.DType.ToSafetensorsName(), shape = t.Shape }),
            }),
            task_vectors = stats is null ? null : new
            {
                tasks = stats.TaskNames,
                parameters = stats.ParameterCount,
                norms = stats.Norms,
                sparsity = stats.Sparsity,
                cosine = Enumerable.Range(0, n).Select(i => Enumerable.Range(0, n).Select(j => stats.CosineSimilarity[i, j]).ToArray()).ToArray(),
                energy = energyRows.Count == 0 ? null : energyRows.Select(r => new { task = r.Task, tensor = r.Tensor, rank = r.Rank, k50 = r.K50, k90 = r.K90, k99 = r.K99 }),
            },
        };
        Console.WriteLine(JsonSerializer.Serialize(document, new JsonSerializerOptions { WriteIndented = true }));
    }
}
