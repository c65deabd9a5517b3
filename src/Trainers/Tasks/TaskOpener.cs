using Microsoft.ML.TaskVectors.Data;

namespace Microsoft.ML.TaskVectors.Trainers.Tasks;

/// <summary>Opens the splits of one task source.</summary>
/// <param name="taskName">The task's name, given to the datasets it opens.</param>
/// <param name="argument">What follows <c>KEYWORD:</c> (a path, a generator's name, …); null for a bare keyword.</param>
/// <param name="carve">How to carve validation from train when the source has no validation split.</param>
public delegate TaskData TaskOpener(string taskName, string? argument, ValidationCarve carve);
