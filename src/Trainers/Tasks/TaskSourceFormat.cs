namespace Microsoft.ML.TaskVectors.Trainers.Tasks;

/// <summary>
/// One accepted form of a task's SOURCE: <c>KEYWORD:ARGUMENT</c> (for example <c>imagefolder:PATH</c>) when
/// <paramref name="Argument"/> is set, or a bare <c>KEYWORD</c> (for example <c>fashion-mnist</c>) when it is null.
/// </summary>
/// <param name="Keyword">The source's keyword, matched ignoring case.</param>
/// <param name="Argument">How usage messages name the argument (<c>PATH</c>), or null when the form takes none.</param>
/// <param name="Description">A short description for usage and error messages.</param>
/// <param name="Open">Opens the task's splits.</param>
/// <param name="CheckArgument">
/// Optional: checks the argument when the source is parsed, throwing <see cref="ArgumentException"/>, so a mistake
/// (say an unknown generator name) shows before anything is loaded.
/// </param>
public sealed record TaskSourceFormat(string Keyword, string? Argument, string Description, TaskOpener Open, Action<string>? CheckArgument = null)
{
    /// <summary>The form as written on a command line: <c>KEYWORD:ARGUMENT</c> or <c>KEYWORD</c>.</summary>
    public string Usage => Argument is null ? Keyword : $"{Keyword}:{Argument}";

    /// <inheritdoc />
    public override string ToString() => $"{Usage} ({Description})";
}
