using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Onnx;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Heads;

/// <summary>
/// A frozen classification head: maps image embeddings (the unnormalised projected CLIP embeddings
/// <c>[batch, D]</c>) to logits <c>[batch, classes]</c>. A <see cref="LinearHead"/> or a <see cref="ZeroShotHead"/>;
/// both save to and load from one safetensors file.
/// </summary>
/// <remarks>
/// File format: tensor <c>weight</c> <c>[classes, D]</c> (class embeddings for a zero-shot head), <c>bias</c>
/// <c>[classes]</c> for a linear head with a bias, <c>logit_scale</c> (a scalar, the logarithm of the multiplier)
/// for a zero-shot head; metadata <c>kind</c> (<c>linear</c> or <c>zeroshot</c>), <c>class_names</c> (a JSON array
/// of strings) and, for a zero-shot head, <c>templates</c> (a JSON array of the prompt templates it was built from).
/// The head's tensors are float32 and need no gradient: gradients flow through a head to the embeddings only.
/// </remarks>
public abstract class ClassificationHead : IDisposable
{
    /// <summary>The name of the weight (or class embeddings) tensor in a head file.</summary>
    public const string WeightName = "weight";

    /// <summary>The name of a linear head's bias tensor in a head file.</summary>
    public const string BiasName = "bias";

    /// <summary>The name of a zero-shot head's logit scale (its logarithm, as CLIP stores it) in a head file.</summary>
    public const string LogitScaleName = "logit_scale";

    /// <summary>The metadata key of the head's kind: <c>linear</c> or <c>zeroshot</c>.</summary>
    public const string KindKey = "kind";

    /// <summary>The metadata key of the class names, a JSON array of strings in class-index order.</summary>
    public const string ClassNamesKey = "class_names";

    /// <summary>The metadata key of a zero-shot head's prompt templates, a JSON array of strings.</summary>
    public const string TemplatesKey = "templates";

    private bool _disposed;

    private protected ClassificationHead(Tensor weight, IReadOnlyList<string> classNames)
    {
        Weight = weight;
        ClassNames = classNames;
        EmbeddingDim = (int)weight.shape[1];
    }

    /// <summary>Linear or zero-shot.</summary>
    public abstract ClassificationHeadKind Kind { get; }

    /// <summary>The class names, in class-index order (logit column <c>i</c> is class <c>ClassNames[i]</c>).</summary>
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>Number of classes (the logits' width).</summary>
    public int ClassCount => ClassNames.Count;

    /// <summary>Width of the embeddings the head reads.</summary>
    public int EmbeddingDim { get; }

    /// <summary>
    /// The weight <c>[classes, D]</c>, float32 (the unit-length class embeddings of a zero-shot head). The tensor
    /// belongs to the head: read it, do not modify or dispose it.
    /// </summary>
    public Tensor Weight { get; private protected set; }

    /// <summary>The device holding the head's tensors.</summary>
    public Device Device => Weight.device;

    /// <summary>
    /// Logits <c>[batch, classes]</c> (float32) for image embeddings <c>[batch, D]</c> on the head's device. Runs
    /// under the caller's autograd mode, so gradients reach the embeddings (never the frozen head).
    /// </summary>
    /// <exception cref="ArgumentException">The embeddings are not floating point <c>[batch, EmbeddingDim]</c> on the head's device.</exception>
    /// <exception cref="ObjectDisposedException">The head was disposed.</exception>
    public Tensor Logits(Tensor imageEmbeds)
    {
        ArgumentNullException.ThrowIfNull(imageEmbeds);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (imageEmbeds.ndim != 2 || imageEmbeds.shape[1] != EmbeddingDim)
            throw new ArgumentException(
                $"Image embeddings must be [batch, {EmbeddingDim}] for this {KindName(Kind)} head, found [{string.Join(", ", imageEmbeds.shape)}].",
                nameof(imageEmbeds));
        if (!imageEmbeds.is_floating_point())
            throw new ArgumentException($"Image embeddings must be floating point, found {imageEmbeds.dtype}.", nameof(imageEmbeds));
        if (!SameDevice(imageEmbeds.device, Device))
            throw new ArgumentException(
                $"Image embeddings are on {imageEmbeds.device} but the head is on {Device}; move the head with To(device) or the embeddings with .to(device).",
                nameof(imageEmbeds));
        using var scope = NewDisposeScope();
        var embeds = imageEmbeds.dtype == ScalarType.Float32 ? imageEmbeds : imageEmbeds.to(ScalarType.Float32);
        return LogitsCore(embeds).MoveToOuterDisposeScope();
    }

    /// <summary>The predicted class index (argmax of the logits, the first on ties) per row: int64 <c>[batch]</c>.</summary>
    /// <exception cref="ArgumentException">As <see cref="Logits"/>.</exception>
    public Tensor Predict(Tensor imageEmbeds)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        return Logits(imageEmbeds).argmax(1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Moves the head's tensors to <paramref name="device"/> (in place) and returns the head, for chaining.
    /// </summary>
    public abstract ClassificationHead To(Device device);

    /// <summary>The same head for an ONNX graph (<see cref="OnnxClassificationHead.Append"/>), with its own copy of the weights.</summary>
    public abstract OnnxClassificationHead ToOnnxHead();

    /// <summary>
    /// Writes the head as a safetensors file (format in the class remarks), atomically: the file appears complete or
    /// not at all. Tensors are stored as F32.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The head was disposed.</exception>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var scope = NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, tensor) in TensorsToSave()) tensors[name] = tensor.detach().cpu().contiguous();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [KindKey] = KindName(Kind),
            [ClassNamesKey] = HeadFile.ToJson(ClassNames),
        };
        AddMetadata(metadata);
        SafetensorsWriter.Save(path, tensors, metadata);
    }

    /// <summary>
    /// Reads a head written by <see cref="Save"/> (or any safetensors file in that format): a <see cref="LinearHead"/>
    /// or a <see cref="ZeroShotHead"/> by its <c>kind</c> metadata. Tensors may be stored as F16, BF16, F32 or F64;
    /// they are loaded as float32.
    /// </summary>
    /// <param name="path">The head file.</param>
    /// <param name="device">Where to put the head (the CPU when null).</param>
    /// <exception cref="FileNotFoundException">The file is missing.</exception>
    /// <exception cref="CheckpointFormatException">The file is not a valid safetensors file.</exception>
    /// <exception cref="InvalidDataException">
    /// The file is not a head: metadata missing or malformed, tensors missing, unexpected, of the wrong shape or
    /// not finite. The message names the file and what was expected.
    /// </exception>
    public static ClassificationHead Load(string path, Device? device = null) => HeadFile.Load(path, device);

    /// <summary>Releases the head's tensors.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Weight.Dispose();
        DisposeOtherTensors();
        GC.SuppressFinalize(this);
    }

    /// <summary>The metadata name of a kind: <c>linear</c> or <c>zeroshot</c>.</summary>
    public static string KindName(ClassificationHeadKind kind) => kind switch
    {
        ClassificationHeadKind.Linear => "linear",
        ClassificationHeadKind.ZeroShot => "zeroshot",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown classification head kind."),
    };

    /// <summary>The logits of float32 embeddings already checked against the head.</summary>
    private protected abstract Tensor LogitsCore(Tensor embeds);

    /// <summary>The tensors of a head file, by name (created in the caller's dispose scope when not owned by the head).</summary>
    private protected abstract IEnumerable<(string Name, Tensor Tensor)> TensorsToSave();

    /// <summary>Releases the tensors the head owns besides <see cref="Weight"/>.</summary>
    private protected virtual void DisposeOtherTensors()
    {
    }

    /// <summary>Adds kind-specific metadata to a file being saved.</summary>
    private protected virtual void AddMetadata(IDictionary<string, string> metadata)
    {
    }

    /// <summary>Loads a head file that must hold a <typeparamref name="T"/>; the typed <c>Load</c> of each kind.</summary>
    private protected static T LoadAs<T>(string path, Device? device, ClassificationHeadKind expected) where T : ClassificationHead
    {
        var head = Load(path, device);
        if (head is T typed) return typed;
        var kind = KindName(head.Kind);
        head.Dispose();
        throw new InvalidDataException($"{path}: holds a {kind} head; a {KindName(expected)} head was expected.");
    }

    private protected void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    private protected static bool SameDevice(Device a, Device b) => a.type == b.type && a.index == b.index;

    /// <summary>A copy of <paramref name="tensor"/> on <paramref name="device"/>, owned by the head (outside any dispose scope); the original is disposed.</summary>
    private protected static Tensor Move(Tensor tensor, Device device)
    {
        var moved = tensor.to(device);
        if (ReferenceEquals(moved, tensor)) return tensor;
        tensor.Dispose();
        return moved.DetachFromDisposeScope();
    }

    /// <summary>
    /// A float32 copy of a caller's tensor for the head to own: detached from autograd and from any dispose scope,
    /// checked to be finite.
    /// </summary>
    private protected static Tensor OwnedCopy(Tensor tensor, Device device, string parameter, string what)
    {
        using var scope = NewDisposeScope();
        if (!tensor.is_floating_point())
            throw new ArgumentException($"The {what} must be floating point, found {tensor.dtype}.", parameter);
        var copy = tensor.detach().to(ScalarType.Float32, device).clone();
        if (!copy.isfinite().all().item<bool>())
            throw new ArgumentException($"The {what} hold NaN or infinite values.", parameter);
        return copy.MoveToOuterDisposeScope().DetachFromDisposeScope();
    }

    /// <summary>Validated class names: at least one, none null or blank, no duplicates; a read-only copy.</summary>
    private protected static IReadOnlyList<string> CheckClassNames(IReadOnlyList<string> classNames, long expected, string parameter)
    {
        ArgumentNullException.ThrowIfNull(classNames, parameter);
        var problem = HeadFile.ClassNamesProblem(classNames, expected);
        if (problem is not null) throw new ArgumentException(problem, parameter);
        return Array.AsReadOnly(classNames.ToArray());
    }
}
