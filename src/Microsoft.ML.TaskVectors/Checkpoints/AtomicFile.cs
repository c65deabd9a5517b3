namespace Microsoft.ML.TaskVectors.Checkpoints;

/// <summary>
/// Writes a file so that readers see either the old file or the complete new one: data goes to a
/// temporary file in the same folder, which replaces the target only when complete.
/// </summary>
public sealed class AtomicFile : IDisposable
{
    private readonly string _tempPath;
    private bool _committed;

    private AtomicFile(string path, string tempPath, FileStream stream)
    {
        Path = path;
        _tempPath = tempPath;
        Stream = stream;
    }

    /// <summary>The final path.</summary>
    public string Path { get; }

    /// <summary>The stream to write to (a temporary file until <see cref="Commit"/>).</summary>
    public FileStream Stream { get; }

    /// <summary>Starts writing <paramref name="path"/>; its folder is created when missing.</summary>
    /// <param name="path">The final path.</param>
    /// <param name="preallocationSize">The file's expected size, reserved up front where the file system can (0: none); cheaper than growing it write by write.</param>
    public static AtomicFile Create(string path, long preallocationSize = 0)
    {
        var full = System.IO.Path.GetFullPath(path);
        var dir = System.IO.Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        var temp = System.IO.Path.Combine(dir, $".{System.IO.Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        var stream = new FileStream(temp, new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.Write,
            Share = FileShare.None,
            BufferSize = 1 << 20,
            PreallocationSize = preallocationSize,
        });
        return new AtomicFile(full, temp, stream);
    }

    /// <summary>Writes a whole file atomically.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        using var file = Create(path);
        write(file.Stream);
        file.Commit();
    }

    /// <summary>Writes a whole text file (UTF-8, no byte-order mark) atomically.</summary>
    public static void WriteAllText(string path, string text) =>
        Write(path, s => s.Write(new System.Text.UTF8Encoding(false).GetBytes(text)));

    /// <summary>
    /// Moves the data into place. Readers never see a partial file; with <paramref name="durable"/>
    /// the data is also forced to disk first (fsync), so it survives a power loss — slower for large files.
    /// </summary>
    public void Commit(bool durable = false)
    {
        ObjectDisposedException.ThrowIf(_committed, this);
        Stream.Flush(flushToDisk: durable);
        Stream.Dispose();
        File.Move(_tempPath, Path, overwrite: true);
        _committed = true;
    }

    /// <summary>Discards the temporary file unless committed.</summary>
    public void Dispose()
    {
        if (_committed) return;
        Stream.Dispose();
        try { File.Delete(_tempPath); } catch (IOException) { }
        _committed = true;
    }
}
