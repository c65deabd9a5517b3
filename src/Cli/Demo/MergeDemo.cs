using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Merging;
using Microsoft.ML.TaskVectors.TaskVectors;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Cli.Demo;

/// <summary>Settings of <see cref="MergeDemo.Run"/>. The defaults are the <c>taskvectors demo</c> defaults.</summary>
public sealed class MergeDemoOptions
{
    /// <summary>Number of tasks N, 2 … 8. Default 4.</summary>
    public int Tasks { get; set; } = 4;

    /// <summary>Classes per task. Default 5.</summary>
    public int Classes { get; set; } = 5;

    /// <summary>Input dimension D. Default 32.</summary>
    public int InputDim { get; set; } = 32;

    /// <summary>Encoder feature dimension H. Default 64.</summary>
    public int HiddenDim { get; set; } = 64;

    /// <summary>Seed of the data, heads, initial weights, training batches and DARE masks. Default 0.</summary>
    public long Seed { get; set; }

    /// <summary>Pre-training steps on a mix of all tasks (kept short so zero-shot stays well below fine-tuned). Default 15.</summary>
    public int PretrainSteps { get; set; } = 15;

    /// <summary>Fine-tuning steps per task. Default 300.</summary>
    public int FineTuneSteps { get; set; } = 300;

    /// <summary>Samples per training step. Default 64.</summary>
    public int BatchSize { get; set; } = 64;

    /// <summary>AdamW learning rate (pre-training and fine-tuning). Default 1e-3.</summary>
    public double LearningRate { get; set; } = 1e-3;

    /// <summary>AdamW weight decay. Default 0.01.</summary>
    public double WeightDecay { get; set; } = 0.01;

    /// <summary>Training samples per class and task. Default 200.</summary>
    public int TrainPerClass { get; set; } = 200;

    /// <summary>Validation samples per class and task. Default 100.</summary>
    public int ValidationPerClass { get; set; } = 100;

    /// <summary>Test samples per class and task. Default 200.</summary>
    public int TestPerClass { get; set; } = 200;

    /// <summary>
    /// Folder for the checkpoints and results, kept after the run. When null a new temporary folder
    /// is used and its checkpoints are deleted at the end (results.md and results.json stay).
    /// </summary>
    public string? WorkDirectory { get; set; }

    /// <summary>The options of the generated task suite.</summary>
    public SyntheticTaskSuiteOptions SuiteOptions() => new()
    {
        Tasks = Tasks,
        Classes = Classes,
        InputDim = InputDim,
        TrainPerClass = TrainPerClass,
        ValidationPerClass = ValidationPerClass,
        TestPerClass = TestPerClass,
        Seed = Seed,
    };

    internal void Validate()
    {
        if (Tasks is < 2 or > 8) throw new ArgumentOutOfRangeException(nameof(Tasks), Tasks, $"The demo needs 2 … 8 tasks; got {Tasks}.");
        if (HiddenDim < 1) throw new ArgumentOutOfRangeException(nameof(HiddenDim), HiddenDim, $"HiddenDim must be at least 1; got {HiddenDim}.");
        if (PretrainSteps < 0) throw new ArgumentOutOfRangeException(nameof(PretrainSteps), PretrainSteps, $"PretrainSteps must be ≥ 0; got {PretrainSteps}.");
        if (FineTuneSteps < 1) throw new ArgumentOutOfRangeException(nameof(FineTuneSteps), FineTuneSteps, $"FineTuneSteps must be at least 1; got {FineTuneSteps}.");
        if (BatchSize < Tasks) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, $"BatchSize must be at least the number of tasks ({Tasks}); got {BatchSize}.");
        if (!double.IsFinite(LearningRate) || LearningRate <= 0) throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "LearningRate must be finite and > 0.");
        if (!double.IsFinite(WeightDecay) || WeightDecay < 0) throw new ArgumentOutOfRangeException(nameof(WeightDecay), WeightDecay, "WeightDecay must be finite and ≥ 0.");
        SuiteOptions().Validate();
    }
}

/// <summary>One row of the results: a model's test accuracy on every task.</summary>
/// <param name="Name">Row name: <c>zero-shot</c>, <c>fine-tuned</c> or a merge method's name.</param>
/// <param name="Accuracies">Test accuracy (fraction correct) per task, in task order.</param>
/// <param name="MeanAccuracy">Mean of <paramref name="Accuracies"/>.</param>
/// <param name="NormalizedMean">Mean over tasks of accuracy ÷ that task's fine-tuned accuracy.</param>
/// <param name="MergeSeconds">Wall time of <see cref="ModelMerger.MergeToFile"/>; null for rows that are not merges.</param>
/// <param name="Lambda">The scaling λ the method used, when it has one.</param>
public sealed record DemoRow(string Name, IReadOnlyList<double> Accuracies, double MeanAccuracy, double NormalizedMean, double? MergeSeconds, double? Lambda);

/// <summary>Task negation θ0 − λ·τ_target: forgetting one task while leaving the others alone.</summary>
/// <param name="TargetTask">The task whose vector is subtracted.</param>
/// <param name="Lambda">λ chosen on validation: the lowest target accuracy that keeps the other tasks at ≥ 95 % of zero-shot.</param>
/// <param name="Accuracies">Test accuracy per task of the negated model.</param>
/// <param name="ZeroShotAccuracies">Test accuracy per task of the base model, for comparison.</param>
/// <param name="MergeSeconds">Wall time of the merge to file.</param>
public sealed record NegationResult(string TargetTask, double Lambda, IReadOnlyList<double> Accuracies, IReadOnlyList<double> ZeroShotAccuracies, double MergeSeconds)
{
    /// <summary>Index of the target task (always 0 in the demo).</summary>
    public int TargetIndex => 0;

    /// <summary>Mean test accuracy of the other (control) tasks after negation.</summary>
    public double ControlMean => Accuracies.Skip(1).Average();

    /// <summary>Mean zero-shot test accuracy of the control tasks.</summary>
    public double ZeroShotControlMean => ZeroShotAccuracies.Skip(1).Average();
}

/// <summary>Everything one run of the demo measured.</summary>
public sealed class MergeDemoResult
{
    internal MergeDemoResult(MergeDemoOptions options, IReadOnlyList<string> taskNames, DemoRow zeroShot, DemoRow fineTuned,
        IReadOnlyList<DemoRow> merges, LambdaSearchResult lambdaSearch, NegationResult negation, long parameterCount, int tensorCount)
    {
        Options = options;
        TaskNames = taskNames;
        ZeroShot = zeroShot;
        FineTuned = fineTuned;
        Merges = merges;
        LambdaSearch = lambdaSearch;
        Negation = negation;
        ParameterCount = parameterCount;
        TensorCount = tensorCount;
    }

    /// <summary>The options of the run.</summary>
    public MergeDemoOptions Options { get; }

    /// <summary>Task names, in order.</summary>
    public IReadOnlyList<string> TaskNames { get; }

    /// <summary>The pre-trained encoder with each task's frozen head.</summary>
    public DemoRow ZeroShot { get; }

    /// <summary>Each task's own fine-tuned encoder (N models; the upper reference).</summary>
    public DemoRow FineTuned { get; }

    /// <summary>One row per data-free merge method, in <see cref="MergeMethods.Names"/> order.</summary>
    public IReadOnlyList<DemoRow> Merges { get; }

    /// <summary>Task arithmetic's λ search on the validation split.</summary>
    public LambdaSearchResult LambdaSearch { get; }

    /// <summary>Task negation of task 0.</summary>
    public NegationResult Negation { get; }

    /// <summary>Parameters in the encoder (= entries per task vector).</summary>
    public long ParameterCount { get; }

    /// <summary>Tensors in the encoder checkpoint.</summary>
    public int TensorCount { get; }

    /// <summary>Zero-shot, fine-tuned, then every merge.</summary>
    public IEnumerable<DemoRow> Rows => new[] { ZeroShot, FineTuned }.Concat(Merges);

    /// <summary>The row named <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">No such row.</exception>
    public DemoRow this[string name] =>
        Rows.FirstOrDefault(r => r.Name == name) ?? throw new KeyNotFoundException($"The demo has no row '{name}' (rows: {string.Join(", ", Rows.Select(r => r.Name))}).");

    /// <summary>The folder holding results.md, results.json and (when kept) the checkpoints.</summary>
    public string WorkDirectory { get; internal set; } = "";

    /// <summary>Path of results.json.</summary>
    public string ResultsJsonPath => Path.Combine(WorkDirectory, "results.json");

    /// <summary>Path of results.md.</summary>
    public string ResultsMarkdownPath => Path.Combine(WorkDirectory, "results.md");

    /// <summary>Whether the checkpoints were kept in <see cref="WorkDirectory"/>.</summary>
    public bool CheckpointsKept { get; internal set; }

    /// <summary>Wall time of the whole run.</summary>
    public TimeSpan Elapsed { get; internal set; }
}

/// <summary>
/// The merge demo on generated data, in the paper's protocol shape: pre-train a small encoder,
/// fine-tune one copy per task with the task's frozen head, take task vectors from the saved
/// safetensors files, merge them with every data-free method (λ chosen on validation), and report
/// absolute and normalised test accuracy per task. Every checkpoint goes through a real file.
/// </summary>
public static class MergeDemo
{
    /// <summary>Fraction of zero-shot control accuracy that task negation must preserve (the task-vectors paper's 95 %).</summary>
    public const double NegationControlFloor = 0.95;

    /// <summary>Runs the demo.</summary>
    /// <param name="options">Settings; null uses the defaults.</param>
    /// <param name="progress">Receives (phase, fraction done) as the run advances.</param>
    /// <param name="cancellationToken">Stops between training steps and between tensors of a merge.</param>
    /// <exception cref="ArgumentOutOfRangeException">An option is outside its range.</exception>
    /// <exception cref="OperationCanceledException">The run was cancelled; a temporary work folder is removed.</exception>
    public static MergeDemoResult Run(MergeDemoOptions? options = null, IProgress<(string Phase, double Fraction)>? progress = null,
        CancellationToken cancellationToken = default)
    {
        var o = options ?? new MergeDemoOptions();
        o.Validate();
        var clock = Stopwatch.StartNew();
        bool temporary = o.WorkDirectory is null;
        string work = temporary
            ? Path.Combine(Path.GetTempPath(), "taskvectors-demo-" + Guid.NewGuid().ToString("N")[..12])
            : Path.GetFullPath(o.WorkDirectory!);
        Directory.CreateDirectory(work);
        bool finished = false;
        try
        {
            var result = RunIn(o, work, progress, cancellationToken);
            result.WorkDirectory = work;
            result.CheckpointsKept = !temporary;
            result.Elapsed = clock.Elapsed;
            File.WriteAllText(result.ResultsJsonPath, ToJson(result));
            File.WriteAllText(result.ResultsMarkdownPath, ToMarkdown(result));
            finished = true;
            return result;
        }
        finally
        {
            if (temporary)
            {
                // Checkpoints are scratch; results stay (they are small) unless the run failed.
                if (finished)
                    foreach (var f in Directory.EnumerateFiles(work, "*.safetensors")) File.Delete(f);
                else
                    try { Directory.Delete(work, recursive: true); } catch (IOException) { }
            }
        }
    }

    private static MergeDemoResult RunIn(MergeDemoOptions o, string work, IProgress<(string, double)>? progress, CancellationToken ct)
    {
        using var suite = SyntheticTaskSuite.Create(o.SuiteOptions());
        using var heads = TaskHeads.Create(o.Tasks, o.Classes, o.HiddenDim, o.Seed);
        using var encoder = new TinyEncoder(o.InputDim, o.HiddenDim, o.Seed);
        var names = suite.TaskNames;
        int n = o.Tasks;
        string basePath = Path.Combine(work, "base.safetensors");
        string FineTunedPath(int t) => Path.Combine(work, $"ft_{names[t]}.safetensors");
        var metadata = new Dictionary<string, string> { ["format"] = "taskvectors/demo-encoder", ["seed"] = o.Seed.ToString(CultureInfo.InvariantCulture) };

        // (a) Pre-training: a short run on a mix of all tasks, so the base is better than chance but far from fine-tuned.
        Train(encoder, heads, suite, Enumerable.Range(0, n).ToArray(), o.PretrainSteps, o, DemoSeed.Derive(o.Seed, DemoSeed.Pretrain),
            "Pre-training", progress, ct);
        encoder.Save(basePath, new Dictionary<string, string>(metadata) { ["role"] = "base" });

        // (b) Fine-tuning one copy per task, each from the saved base, with the task's head frozen.
        using (var baseFile = Checkpoint.Open(basePath))
        {
            for (int t = 0; t < n; t++)
            {
                encoder.Load(baseFile);
                int task = t;
                Train(encoder, heads, suite, [t], o.FineTuneSteps, o, DemoSeed.Derive(o.Seed, DemoSeed.FineTune, t), "Fine-tuning",
                    progress is null ? null : new Scaled(progress, task, n), ct);
                encoder.Save(FineTunedPath(t), new Dictionary<string, string>(metadata) { ["role"] = "fine-tuned", ["task"] = names[t] });
            }
        }

        // Reference rows, evaluated from the files.
        using var @base = Checkpoint.Open(basePath);
        encoder.Load(@base);
        var zeroShotTest = Evaluate(encoder, heads, suite, DemoSplit.Test);
        var zeroShotValidation = Evaluate(encoder, heads, suite, DemoSplit.Validation);
        var fineTunedTest = new double[n];
        var fineTunedValidation = new double[n];
        for (int t = 0; t < n; t++)
        {
            using var ft = Checkpoint.Open(FineTunedPath(t));
            encoder.Load(ft);
            fineTunedTest[t] = Accuracy(encoder, heads, t, suite.Get(t, DemoSplit.Test));
            fineTunedValidation[t] = Accuracy(encoder, heads, t, suite.Get(t, DemoSplit.Validation));
        }
        DemoRow Row(string name, double[] accuracies, double? seconds = null, double? lambda = null) =>
            new(name, accuracies, accuracies.Average(), accuracies.Select((a, t) => a / fineTunedTest[t]).Average(), seconds, lambda);

        // (c) Task vectors from the files, then every data-free merge.
        var finetuned = new List<Checkpoint>();
        try
        {
            for (int t = 0; t < n; t++) finetuned.Add(Checkpoint.Open(FineTunedPath(t)));
            using var pool = new TaskVectorPool(finetuned.Select((f, t) => TaskVector.FromCheckpoints(@base, f, name: names[t])).ToArray(),
                keepInMemory: true);
            pool.Load(cancellationToken: ct);

            var grid = TaskArithmetic.DefaultGrid;
            int evaluated = 0;
            var search = TaskArithmetic.SelectLambda(grid, lambda =>
            {
                ct.ThrowIfCancellationRequested();
                using (var view = ModelMerger.Merge(@base, pool, new TaskArithmetic(lambda), cancellationToken: ct))
                    encoder.Load(view);
                progress?.Report(("Choosing λ on validation", ++evaluated / (double)grid.Count));
                return Evaluate(encoder, heads, suite, DemoSplit.Validation);
            }, fineTunedValidation);

            var methods = MergeMethods.Names.Where(m => m != MergeMethods.NegateName).ToArray();
            var merges = new List<DemoRow>();
            for (int i = 0; i < methods.Length; i++)
            {
                ct.ThrowIfCancellationRequested();
                string name = methods[i];
                // DARE-TA rescales like task arithmetic, so it reuses the validated λ; TIES keeps its own default (1.0).
                double? lambda = name is MergeMethods.TaskArithmeticName or MergeMethods.DareTaskArithmeticName ? search.BestLambda : null;
                var method = MergeMethods.Create(name, new MergeMethodOptions { Lambda = lambda, Seed = o.Seed });
                string path = Path.Combine(work, $"merged_{name}.safetensors");
                var watch = Stopwatch.StartNew();
                ModelMerger.MergeToFile(@base, pool, method, path, cancellationToken: ct);
                watch.Stop();
                using (var merged = Checkpoint.Open(path)) encoder.Load(merged);
                merges.Add(Row(name, Evaluate(encoder, heads, suite, DemoSplit.Test), watch.Elapsed.TotalSeconds, lambda ?? LambdaOf(method)));
                progress?.Report(("Merging", (i + 1) / (double)methods.Length));
            }

            // (d) Negation of task 0, λ chosen on validation as in the task-vectors paper.
            var negation = Negate(o, @base, finetuned[0], names, encoder, heads, suite, zeroShotValidation, zeroShotTest, work, progress, ct);

            return new MergeDemoResult(o, names, Row("zero-shot", zeroShotTest), Row("fine-tuned", fineTunedTest), merges, search, negation,
                pool.ParameterCount, pool.TensorNames.Count);
        }
        finally
        {
            foreach (var f in finetuned) f.Dispose();
        }
    }

    private static double? LambdaOf(MergeMethod method) => method switch
    {
        TaskArithmetic ta => ta.Lambda,
        TiesMerging ties => ties.Lambda,
        DareMerging d => LambdaOf(d.Inner),
        _ => null,
    };

    private static NegationResult Negate(MergeDemoOptions o, Checkpoint @base, Checkpoint target, IReadOnlyList<string> names,
        TinyEncoder encoder, TaskHeads heads, SyntheticTaskSuite suite, double[] zeroShotValidation, double[] zeroShotTest,
        string work, IProgress<(string, double)>? progress, CancellationToken ct)
    {
        using var single = new TaskVectorPool([TaskVector.FromCheckpoints(@base, target, name: names[0])], keepInMemory: true);
        double floor = NegationControlFloor * zeroShotValidation.Skip(1).Average();
        var grid = TaskArithmetic.DefaultGrid;
        double bestLambda = 0, bestTarget = double.PositiveInfinity;
        for (int i = 0; i < grid.Count; i++)
        {
            ct.ThrowIfCancellationRequested();
            using (var view = ModelMerger.Merge(@base, single, new TaskNegation(grid[i]), cancellationToken: ct)) encoder.Load(view);
            var accuracies = Evaluate(encoder, heads, suite, DemoSplit.Validation);
            // Strictly lower only: on ties keep the smaller λ (the gentler edit).
            if (accuracies.Skip(1).Average() >= floor && accuracies[0] < bestTarget)
                (bestLambda, bestTarget) = (grid[i], accuracies[0]);
            progress?.Report(("Negating task0", (i + 1) / (double)(grid.Count + 1)));
        }
        string path = Path.Combine(work, $"negated_{names[0]}.safetensors");
        var watch = Stopwatch.StartNew();
        ModelMerger.MergeToFile(@base, single, MergeMethods.Create(MergeMethods.NegateName, new MergeMethodOptions { Lambda = bestLambda }), path,
            cancellationToken: ct);
        watch.Stop();
        using (var negated = Checkpoint.Open(path)) encoder.Load(negated);
        var test = Evaluate(encoder, heads, suite, DemoSplit.Test);
        progress?.Report(("Negating task0", 1.0));
        return new NegationResult(names[0], bestLambda, test, zeroShotTest, watch.Elapsed.TotalSeconds);
    }

    private static void Train(TinyEncoder encoder, TaskHeads heads, SyntheticTaskSuite suite, int[] tasks, int steps, MergeDemoOptions o,
        ulong seed, string phase, IProgress<(string, double)>? progress, CancellationToken ct)
    {
        if (steps == 0) return;
        encoder.train();
        using var optimizer = optim.AdamW(encoder.parameters(), o.LearningRate, weight_decay: o.WeightDecay);
        using var g = new Generator(seed);
        int perTask = o.BatchSize / tasks.Length;
        for (int step = 0; step < steps; step++)
        {
            ct.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            Tensor? loss = null;
            foreach (int t in tasks)
            {
                var split = suite.Get(t, DemoSplit.Train);
                var index = randint(split.Count, [perTask], generator: g);
                var logits = heads.Logits(t, encoder.forward(split.Inputs.index_select(0, index)));
                var taskLoss = nn.functional.cross_entropy(logits, split.Labels.index_select(0, index));
                loss = loss is null ? taskLoss : loss + taskLoss;
            }
            loss!.div(tasks.Length).backward();
            optimizer.step();
            if (progress is not null && ((step + 1) % 10 == 0 || step + 1 == steps))
                progress.Report((phase, (step + 1) / (double)steps));
        }
        encoder.eval();
    }

    /// <summary>Test or validation accuracy of the encoder on every task (each through its own head).</summary>
    private static double[] Evaluate(TinyEncoder encoder, TaskHeads heads, SyntheticTaskSuite suite, DemoSplit split) =>
        Enumerable.Range(0, suite.TaskCount).Select(t => Accuracy(encoder, heads, t, suite.Get(t, split))).ToArray();

    private static double Accuracy(TinyEncoder encoder, TaskHeads heads, int task, LabeledSplit data)
    {
        const long batch = 1024;
        using var noGrad = no_grad();
        long correct = 0;
        for (long start = 0; start < data.Count; start += batch)
        {
            using var scope = NewDisposeScope();
            long size = Math.Min(batch, data.Count - start);
            var logits = heads.Logits(task, encoder.forward(data.Inputs.narrow(0, start, size)));
            correct += logits.argmax(1).eq(data.Labels.narrow(0, start, size)).sum().ToInt64();
        }
        return correct / (double)data.Count;
    }

    /// <summary>Maps one task's fine-tuning progress into the shared "Fine-tuning" bar.</summary>
    private sealed class Scaled(IProgress<(string, double)> inner, int task, int tasks) : IProgress<(string, double)>
    {
        public void Report((string, double) value) => inner.Report((value.Item1, (task + value.Item2) / tasks));
    }

    // ---- Reporting -------------------------------------------------------------------------

    private static string Percent(double fraction) => (100 * fraction).ToString("F1", CultureInfo.InvariantCulture);

    private static string Seconds(double? seconds) => seconds switch
    {
        null => "—",
        < 1 => (seconds.Value * 1000).ToString("F0", CultureInfo.InvariantCulture) + " ms",
        _ => seconds.Value.ToString("F2", CultureInfo.InvariantCulture) + " s",
    };

    private static string Label(DemoRow row) => row.Name switch
    {
        "fine-tuned" => "fine-tuned (individual)",
        _ when row.Lambda is { } l && row.Name != MergeMethods.TiesName && row.Name != MergeMethods.DareTiesName
            => $"{row.Name} (λ={l.ToString("0.##", CultureInfo.InvariantCulture)})",
        _ => row.Name,
    };

    /// <summary>The results as a Spectre.Console table: rows are models, columns per-task accuracy (%), means and merge time.</summary>
    public static Table ToTable(MergeDemoResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        // Short labels and headers keep four tasks within an 80-column terminal; λ goes in the caption.
        var table = new Table().Border(TableBorder.Rounded)
            .Title($"Test accuracy (%) — {result.TaskNames.Count} synthetic tasks, seed {result.Options.Seed}");
        table.AddColumn(new TableColumn("model").NoWrap());
        foreach (var name in result.TaskNames) table.AddColumn(new TableColumn(name).RightAligned());
        table.AddColumn(new TableColumn("mean").RightAligned());
        table.AddColumn(new TableColumn("norm.").RightAligned());
        table.AddColumn(new TableColumn("merge").RightAligned());
        void Add(string label, IEnumerable<double> accuracies, double mean, string normalized, double? seconds) =>
            table.AddRow([Markup.Escape(label), .. accuracies.Select(Percent), Percent(mean), normalized, Seconds(seconds)]);
        foreach (var row in result.Rows)
        {
            Add(row.Name, row.Accuracies, row.MeanAccuracy, Percent(row.NormalizedMean), row.MergeSeconds);
            if (row == result.FineTuned) table.AddEmptyRow();
        }
        var neg = result.Negation;
        table.AddEmptyRow();
        Add($"negate {neg.TargetTask}", neg.Accuracies, neg.Accuracies.Average(), "—", neg.MergeSeconds);
        static string L(double value) => value.ToString("0.##", CultureInfo.InvariantCulture);
        var lambdas = result.Merges.Where(r => r.Lambda is not null).Select(r => $"{r.Name} {L(r.Lambda!.Value)}");
        table.Caption("fine-tuned: one model per task; norm.: mean of accuracy ÷ fine-tuned accuracy; " +
                      $"λ: {string.Join(", ", lambdas)}, negate {L(neg.Lambda)} (task arithmetic's and negation's chosen on validation).");
        return table;
    }

    /// <summary>One-paragraph reading of the results (λ, best merge, negation), for under the table.</summary>
    public static string Summary(MergeDemoResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var best = result.Merges.MaxBy(r => r.NormalizedMean)!;
        var neg = result.Negation;
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"Encoder: {result.ParameterCount:N0} parameters in {result.TensorCount} tensors; {result.TaskNames.Count} tasks × {result.Options.Classes} classes; {result.Options.FineTuneSteps} fine-tuning steps per task.");
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"Task arithmetic: λ = {result.LambdaSearch.BestLambda:0.##} chosen from {result.LambdaSearch.Evaluations.Count} values on validation (normalised {Percent(result.LambdaSearch.BestMeanNormalizedAccuracy)} %).");
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"Best merge: {best.Name}, mean {Percent(best.MeanAccuracy)} % ({Percent(best.NormalizedMean)} % of fine-tuned) vs zero-shot {Percent(result.ZeroShot.MeanAccuracy)} %.");
        sb.Append(CultureInfo.InvariantCulture,
            $"Negation θ0 − {neg.Lambda:0.##}·τ_{neg.TargetTask}: {neg.TargetTask} {Percent(neg.ZeroShotAccuracies[0])} % → {Percent(neg.Accuracies[0])} %; other tasks {Percent(neg.ZeroShotControlMean)} % → {Percent(neg.ControlMean)} % (zero-shot → negated).");
        return sb.ToString();
    }

    /// <summary>The results as Markdown (the table, the λ search and the negation).</summary>
    public static string ToMarkdown(MergeDemoResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var o = result.Options;
        var sb = new StringBuilder();
        sb.AppendLine("# Merge demo on synthetic tasks").AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"{result.TaskNames.Count} tasks × {o.Classes} classes over {o.InputDim}-dimensional inputs; encoder Linear({o.InputDim},{o.HiddenDim}) → GELU → Linear({o.HiddenDim},{o.HiddenDim}) → LayerNorm " +
            $"({result.ParameterCount:N0} parameters, {result.TensorCount} tensors) with frozen random per-task heads; seed {o.Seed}; " +
            $"{o.PretrainSteps} pre-training steps, {o.FineTuneSteps} fine-tuning steps per task (AdamW, lr {o.LearningRate}, batch {o.BatchSize}).");
        sb.AppendLine().AppendLine("Test accuracy (%). Normalised = mean over tasks of accuracy ÷ the task's fine-tuned accuracy.").AppendLine();
        sb.Append("| model | ").Append(string.Join(" | ", result.TaskNames)).AppendLine(" | mean | normalised | merge time |");
        sb.Append("|---|").Append(string.Concat(Enumerable.Repeat("---:|", result.TaskNames.Count))).AppendLine("---:|---:|---:|");
        foreach (var row in result.Rows)
            sb.AppendLine($"| {Label(row)} | {string.Join(" | ", row.Accuracies.Select(Percent))} | {Percent(row.MeanAccuracy)} | {Percent(row.NormalizedMean)} | {Seconds(row.MergeSeconds)} |");
        var neg = result.Negation;
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"| negate {neg.TargetTask} (λ={neg.Lambda:0.##}) | {string.Join(" | ", neg.Accuracies.Select(Percent))} | {Percent(neg.Accuracies.Average())} | — | {Seconds(neg.MergeSeconds)} |");
        sb.AppendLine().AppendLine("## Task arithmetic λ on validation").AppendLine();
        sb.AppendLine("| λ | " + string.Join(" | ", result.TaskNames) + " | normalised |");
        sb.AppendLine("|---:|" + string.Concat(Enumerable.Repeat("---:|", result.TaskNames.Count)) + "---:|");
        foreach (var e in result.LambdaSearch.Evaluations)
        {
            string mark = e.Lambda == result.LambdaSearch.BestLambda ? " **(chosen)**" : "";
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {e.Lambda:0.00}{mark} | {string.Join(" | ", e.Accuracies.Select(Percent))} | {Percent(e.MeanNormalizedAccuracy)} |");
        }
        sb.AppendLine().AppendLine("## Negation").AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"θ0 − λ·τ_{neg.TargetTask}, with λ the value of the grid that lowers {neg.TargetTask}'s validation accuracy most while the other tasks keep ≥ {NegationControlFloor:P0} of their zero-shot accuracy: " +
            $"λ = {neg.Lambda:0.##}; {neg.TargetTask} {Percent(neg.ZeroShotAccuracies[0])} % → {Percent(neg.Accuracies[0])} %, other tasks {Percent(neg.ZeroShotControlMean)} % → {Percent(neg.ControlMean)} % (test).");
        sb.AppendLine().AppendLine(CultureInfo.InvariantCulture, $"Run time: {result.Elapsed.TotalSeconds:F1} s.");
        return sb.ToString();
    }

    /// <summary>
    /// The results as JSON: <c>{"methods": {NAME: {"tasks": {task: accuracy}, "mean_accuracy", "normalized_mean", …}}, …}</c>,
    /// accuracies as fractions.
    /// </summary>
    public static string ToJson(MergeDemoResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var o = result.Options;
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            void Tasks(string property, IReadOnlyList<double> accuracies)
            {
                w.WriteStartObject(property);
                for (int t = 0; t < accuracies.Count; t++) w.WriteNumber(result.TaskNames[t], accuracies[t]);
                w.WriteEndObject();
            }

            w.WriteStartObject();
            w.WriteStartObject("config");
            w.WriteNumber("tasks", o.Tasks);
            w.WriteNumber("classes", o.Classes);
            w.WriteNumber("input_dim", o.InputDim);
            w.WriteNumber("hidden_dim", o.HiddenDim);
            w.WriteNumber("seed", o.Seed);
            w.WriteNumber("pretrain_steps", o.PretrainSteps);
            w.WriteNumber("finetune_steps", o.FineTuneSteps);
            w.WriteNumber("batch_size", o.BatchSize);
            w.WriteNumber("learning_rate", o.LearningRate);
            w.WriteNumber("weight_decay", o.WeightDecay);
            w.WriteNumber("parameters", result.ParameterCount);
            w.WriteEndObject();

            w.WriteStartObject("methods");
            foreach (var row in result.Rows)
            {
                w.WriteStartObject(row.Name);
                Tasks("tasks", row.Accuracies);
                w.WriteNumber("mean_accuracy", row.MeanAccuracy);
                w.WriteNumber("normalized_mean", row.NormalizedMean);
                if (row.Lambda is { } lambda) w.WriteNumber("lambda", lambda);
                if (row.MergeSeconds is { } seconds) w.WriteNumber("merge_seconds", seconds);
                w.WriteEndObject();
            }
            w.WriteEndObject();

            w.WriteStartObject("lambda_search");
            w.WriteNumber("best_lambda", result.LambdaSearch.BestLambda);
            w.WriteNumber("best_normalized_mean", result.LambdaSearch.BestMeanNormalizedAccuracy);
            w.WriteStartArray("evaluations");
            foreach (var e in result.LambdaSearch.Evaluations)
            {
                w.WriteStartObject();
                w.WriteNumber("lambda", e.Lambda);
                Tasks("validation", e.Accuracies);
                w.WriteNumber("normalized_mean", e.MeanNormalizedAccuracy);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();

            var neg = result.Negation;
            w.WriteStartObject("negation");
            w.WriteString("target", neg.TargetTask);
            w.WriteNumber("lambda", neg.Lambda);
            Tasks("tasks", neg.Accuracies);
            Tasks("zero_shot", neg.ZeroShotAccuracies);
            w.WriteNumber("control_mean", neg.ControlMean);
            w.WriteNumber("zero_shot_control_mean", neg.ZeroShotControlMean);
            w.WriteNumber("merge_seconds", neg.MergeSeconds);
            w.WriteEndObject();

            w.WriteNumber("elapsed_seconds", result.Elapsed.TotalSeconds);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }
}
