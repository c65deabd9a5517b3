namespace Microsoft.ML.TaskVectors.Runtime;

/// <summary>
/// An <see cref="IProgress{T}"/> that calls its action on the reporting thread, in order (unlike
/// <see cref="Progress{T}"/>, which posts to a synchronisation context or the thread pool).
/// </summary>
public sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
{
    /// <inheritdoc />
    public void Report(T value) => report(value);
}
