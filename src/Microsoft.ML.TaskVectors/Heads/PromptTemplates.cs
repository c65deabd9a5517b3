using System.Text;

namespace Microsoft.ML.TaskVectors.Heads;

/// <summary>
/// Zero-shot prompt templates: format strings with <c>{0}</c> where the class name goes. The built-in sets are
/// those of the task-vector and aTLAS repositories (<c>src/datasets/templates.py</c>) for the eight standard
/// vision tasks; a zero-shot head averages the text embeddings of a class over its dataset's templates.
/// </summary>
public static class PromptTemplates
{
    /// <summary>The placeholder in a template.</summary>
    public const string Placeholder = "{0}";

    private const string PythonPlaceholder = "{c}";

    private static readonly Dictionary<string, IReadOnlyList<string>> s_sets = new(StringComparer.OrdinalIgnoreCase)
    {
        ["Cars"] = Set(
            "a photo of a {0}.",
            "a photo of the {0}.",
            "a photo of my {0}.",
            "i love my {0}!",
            "a photo of my dirty {0}.",
            "a photo of my clean {0}.",
            "a photo of my new {0}.",
            "a photo of my old {0}."),
        ["DTD"] = Set(
            "a photo of a {0} texture.",
            "a photo of a {0} pattern.",
            "a photo of a {0} thing.",
            "a photo of a {0} object.",
            "a photo of the {0} texture.",
            "a photo of the {0} pattern.",
            "a photo of the {0} thing.",
            "a photo of the {0} object."),
        ["EuroSAT"] = Set(
            "a centered satellite photo of {0}.",
            "a centered satellite photo of a {0}.",
            "a centered satellite photo of the {0}."),
        ["GTSRB"] = Set(
            "a zoomed in photo of a \"{0}\" traffic sign.",
            "a centered photo of a \"{0}\" traffic sign.",
            "a close up photo of a \"{0}\" traffic sign."),
        ["MNIST"] = Set(
            "a photo of the number: \"{0}\"."),
        ["RESISC45"] = Set(
            "satellite imagery of {0}.",
            "aerial imagery of {0}.",
            "satellite photo of {0}.",
            "aerial photo of {0}.",
            "satellite view of {0}.",
            "aerial view of {0}.",
            "satellite imagery of a {0}.",
            "aerial imagery of a {0}.",
            "satellite photo of a {0}.",
            "aerial photo of a {0}.",
            "satellite view of a {0}.",
            "aerial view of a {0}.",
            "satellite imagery of the {0}.",
            "aerial imagery of the {0}.",
            "satellite photo of the {0}.",
            "aerial photo of the {0}.",
            "satellite view of the {0}.",
            "aerial view of the {0}."),
        ["SUN397"] = Set(
            "a photo of a {0}.",
            "a photo of the {0}."),
        ["SVHN"] = Set(
            "a photo of the number: \"{0}\"."),
    };

    /// <summary>The single generic template "a photo of a {0}.", for datasets without their own set.</summary>
    public static IReadOnlyList<string> Default { get; } = Set("a photo of a {0}.");

    /// <summary>The datasets with a built-in set: Cars, DTD, EuroSAT, GTSRB, MNIST, RESISC45, SUN397, SVHN.</summary>
    public static IReadOnlyList<string> Names { get; } = Array.AsReadOnly(s_sets.Keys.ToArray());

    /// <summary>
    /// The templates of a dataset, by case-insensitive name. A trailing "Val" (as in "EuroSATVal", the
    /// repositories' validation splits) is ignored.
    /// </summary>
    /// <exception cref="KeyNotFoundException">No built-in set has this name; the message lists the known names.</exception>
    public static IReadOnlyList<string> For(string datasetName)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(datasetName);
        var name = datasetName.Trim();
        if (s_sets.TryGetValue(name, out var set)) return set;
        if (name.EndsWith("Val", StringComparison.OrdinalIgnoreCase) && s_sets.TryGetValue(name[..^3], out set)) return set;
        throw new KeyNotFoundException(
            $"No prompt templates for dataset '{datasetName}'; known datasets: {string.Join(", ", Names)}. " +
            "Use PromptTemplates.Default or PromptTemplates.FromFile for others.");
    }

    /// <summary>The prompt for one class: <paramref name="template"/> with every <c>{0}</c> replaced by <paramref name="className"/>.</summary>
    /// <exception cref="ArgumentException">The template has no <c>{0}</c>.</exception>
    public static string Apply(string template, string className)
    {
        ArgumentNullException.ThrowIfNull(template);
        ArgumentNullException.ThrowIfNull(className);
        // Plain replacement, not string.Format: class names and templates may hold other braces.
        if (!template.Contains(Placeholder, StringComparison.Ordinal))
            throw new ArgumentException($"Template '{template}' has no {Placeholder} placeholder for the class name.", nameof(template));
        return template.Replace(Placeholder, className, StringComparison.Ordinal);
    }

    /// <summary>
    /// Reads templates from a UTF-8 text file, one a line, with <c>{c}</c> (as in the Python lambdas) or
    /// <c>{0}</c> where the class name goes. Blank lines are skipped; returned templates use <c>{0}</c>.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file is missing.</exception>
    /// <exception cref="InvalidDataException">A line has no placeholder (the message gives its number) or the file has no template.</exception>
    public static IReadOnlyList<string> FromFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file.", path);
        var templates = new List<string>();
        int lineNumber = 0;
        foreach (var raw in File.ReadLines(path, Encoding.UTF8))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(raw)) continue;
            var line = raw.Trim().Replace(PythonPlaceholder, Placeholder, StringComparison.Ordinal);
            if (!line.Contains(Placeholder, StringComparison.Ordinal))
                throw new InvalidDataException(
                    $"{path}: line {lineNumber} ('{raw.Trim()}') has no {PythonPlaceholder} or {Placeholder} placeholder for the class name.");
            templates.Add(line);
        }
        if (templates.Count == 0) throw new InvalidDataException($"{path}: no templates; one template a line was expected.");
        return templates.AsReadOnly();
    }

    private static IReadOnlyList<string> Set(params string[] templates) => Array.AsReadOnly(templates);
}
