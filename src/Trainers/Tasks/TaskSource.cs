using Microsoft.ML.TaskVectors.Data;

namespace Microsoft.ML.TaskVectors.Trainers.Tasks;

/// <summary>
/// Where a task's images come from, parsed from <c>NAME=SOURCE</c>: <c>imagefolder:PATH</c> (torchvision's
/// ImageFolder layout), <c>idx:PATH</c> (a folder with the four MNIST-style IDX files), <c>fashion-mnist</c>
/// (Debian's <c>dataset-fashion-mnist</c> package) or <c>procedural:FAMILY[,KEY=VALUE…]</c> (images generated in
/// memory by <see cref="ProceduralTasks"/>). Further forms are added with <see cref="Register"/>.
/// </summary>
public sealed class TaskSource
{
    private static readonly object s_gate = new();
    private static List<TaskSourceFormat> s_formats =
    [
        new("imagefolder", "PATH", "a folder with train/, test/ and optionally val/, one sub-folder per class", OpenImageFolder),
        new("idx", "PATH", "a folder with the train-* and t10k-* IDX images and labels files, plain or .gz", OpenIdx),
        new("fashion-mnist", null, $"Fashion-MNIST from {IdxDataset.FashionMnistDebianFolder} (Debian/Ubuntu package dataset-fashion-mnist)", OpenFashionMnist),
        new("procedural", "FAMILY", $"images generated in memory; FAMILY is one of {ProceduralTasks.FamilyNames}, optionally followed by ,KEY=VALUE options: {ProceduralTasks.OptionKeys}",
            OpenProcedural, argument => ProceduralTasks.Parse(argument)),
    ];

    private TaskSource(string name, TaskSourceFormat format, string? argument)
    {
        Name = name;
        Format = format;
        Argument = argument;
    }

    /// <summary>The task's name (the part before <c>=</c>).</summary>
    public string Name { get; }

    /// <summary>The form the source was written in.</summary>
    public TaskSourceFormat Format { get; }

    /// <summary>What follows <c>KEYWORD:</c> (a path); null for a bare keyword.</summary>
    public string? Argument { get; }

    /// <summary>The forms accepted by <see cref="Parse"/>, in the order usage messages list them.</summary>
    public static IReadOnlyList<TaskSourceFormat> Formats
    {
        get
        {
            lock (s_gate) return s_formats.AsReadOnly();
        }
    }

    /// <summary>Every accepted form on one line, for usage and error messages.</summary>
    public static string AcceptedForms => string.Join("; ", Formats.Select(f => $"NAME={f.Usage} ({f.Description})"));

    /// <summary>
    /// Adds a source form (for example procedural tasks generated in memory). Later calls to <see cref="Parse"/>
    /// accept it and error messages list it.
    /// </summary>
    /// <exception cref="ArgumentException">The keyword is blank, holds ':' or '=' or white space, or is already taken.</exception>
    public static void Register(TaskSourceFormat format)
    {
        ArgumentNullException.ThrowIfNull(format);
        ArgumentNullException.ThrowIfNull(format.Open, nameof(format.Open));
        if (string.IsNullOrWhiteSpace(format.Keyword) || format.Keyword.Any(c => c is ':' or '=' || char.IsWhiteSpace(c)))
            throw new ArgumentException($"A task source keyword must be non-blank without ':', '=' or white space; got '{format.Keyword}'.", nameof(format));
        lock (s_gate)
        {
            if (s_formats.Any(f => string.Equals(f.Keyword, format.Keyword, StringComparison.OrdinalIgnoreCase)))
                throw new ArgumentException($"The task source keyword '{format.Keyword}' is already registered.", nameof(format));
            // Copy on write: readers hold on to the list they were given.
            s_formats = [.. s_formats, format];
        }
    }

    /// <summary>Parses <c>NAME=SOURCE</c>; nothing is opened yet (see <see cref="Open"/>).</summary>
    /// <exception cref="ArgumentException">
    /// The text is not <c>NAME=SOURCE</c>, the name is blank, the source's keyword is unknown, a path is missing, or a
    /// bare keyword is given an argument: the message quotes the text and lists the accepted forms. Or the form's
    /// <see cref="TaskSourceFormat.CheckArgument"/> refuses the argument (for example an unknown procedural family):
    /// the message quotes the text and says what the form accepts.
    /// </exception>
    public static TaskSource Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var equals = text.IndexOf('=');
        if (equals < 0)
            throw Bad(text, "expected NAME=SOURCE");
        var name = text[..equals].Trim();
        var source = text[(equals + 1)..].Trim();
        if (name.Length == 0) throw Bad(text, "the task name before '=' is empty");
        if (source.Length == 0) throw Bad(text, "the source after '=' is empty");

        var colon = source.IndexOf(':');
        var keyword = colon < 0 ? source : source[..colon];
        var argument = colon < 0 ? null : source[(colon + 1)..].Trim();
        var format = Formats.FirstOrDefault(f => string.Equals(f.Keyword, keyword, StringComparison.OrdinalIgnoreCase));
        if (format is null)
        {
            // A bare folder is the most likely slip: say which prefix it needs.
            var hint = Directory.Exists(source) ? $" ('{source}' is a folder: write imagefolder:{source} or idx:{source})" : "";
            throw Bad(text, $"unknown source '{source}'{hint}");
        }
        if (format.Argument is null && argument is not null)
            throw Bad(text, $"'{format.Keyword}' takes no argument, found ':{argument}'");
        if (format.Argument is not null && string.IsNullOrEmpty(argument))
            throw Bad(text, $"'{format.Keyword}' needs {format.Keyword}:{format.Argument}");
        if (argument is not null && format.CheckArgument is not null)
        {
            try
            {
                format.CheckArgument(argument);
            }
            catch (ArgumentException e)
            {
                // The checker's message names what is wrong and what is accepted; the list of every form would bury it.
                throw new ArgumentException($"Task '{text}': {e.Message}", nameof(text), e);
            }
        }
        return new TaskSource(name, format, argument);
    }

    /// <summary>Opens the task's train, validation and test splits.</summary>
    /// <param name="carve">How validation is carved from train when the source has no validation split; default <see cref="ValidationCarve.Default"/>.</param>
    /// <exception cref="DirectoryNotFoundException">The source's folder is missing.</exception>
    /// <exception cref="FileNotFoundException">A file the source needs is missing.</exception>
    /// <exception cref="InvalidDataException">The data is malformed; the message names the file or folder.</exception>
    public TaskData Open(ValidationCarve? carve = null) => Format.Open(Name, Argument, carve ?? ValidationCarve.Default);

    /// <summary>The source as written: <c>NAME=KEYWORD[:ARGUMENT]</c>.</summary>
    public override string ToString() => Argument is null ? $"{Name}={Format.Keyword}" : $"{Name}={Format.Keyword}:{Argument}";

    private static ArgumentException Bad(string text, string problem) =>
        new($"Task '{text}': {problem}. Accepted forms: {AcceptedForms}.", nameof(text));

    private static TaskData OpenImageFolder(string name, string? path, ValidationCarve carve)
    {
        var root = path!;
        if (!Directory.Exists(root)) throw new DirectoryNotFoundException($"Task '{name}': no such folder '{root}' (imagefolder:PATH needs PATH/train/<class>/<images>).");
        var train = ImageFolderDataset.Open(root, DatasetSplit.Train, carve, name);
        var validation = ImageFolderDataset.Open(root, DatasetSplit.Validation, carve, name);
        var test = Directory.Exists(Path.Combine(root, DatasetSplit.Test.FolderName()))
            ? ImageFolderDataset.Open(root, DatasetSplit.Test, carve, name)
            : null;
        return TaskData.Create(name, train, validation, test);
    }

    private static TaskData OpenProcedural(string name, string? argument, ValidationCarve carve)
    {
        // Every split is generated, so there is nothing to carve.
        var (family, options) = ProceduralTasks.Parse(argument!);
        return TaskData.Create(name, family.Open(DatasetSplit.Train, options, name)!, family.Open(DatasetSplit.Validation, options, name)!,
            family.Open(DatasetSplit.Test, options, name));
    }

    private static TaskData OpenIdx(string name, string? path, ValidationCarve carve) => OpenIdxFolder(name, path!, null, carve);

    private static TaskData OpenFashionMnist(string name, string? argument, ValidationCarve carve)
    {
        var folder = IdxDataset.FashionMnistDebianFolder;
        if (!Directory.Exists(folder))
            throw new DirectoryNotFoundException(
                $"Task '{name}': fashion-mnist reads {folder}, which is missing; install the Debian/Ubuntu package dataset-fashion-mnist, " +
                "or use idx:PATH with a folder holding the four Fashion-MNIST files.");
        return OpenIdxFolder(name, folder, IdxDataset.FashionClassNames, carve);
    }

    private static TaskData OpenIdxFolder(string name, string folder, IReadOnlyList<string>? classNames, ValidationCarve carve)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"Task '{name}': no such folder '{folder}' (idx:PATH needs the four IDX files in PATH).");
        var train = IdxDataset.Open(folder, DatasetSplit.Train, classNames, carve, name);
        var validation = IdxDataset.Open(folder, DatasetSplit.Validation, classNames, carve, name);
        var test = IdxDataset.Open(folder, DatasetSplit.Test, classNames, carve, name);
        return TaskData.Create(name, train, validation, test);
    }
}
