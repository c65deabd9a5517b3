using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Onnx;
using Microsoft.ML.TaskVectors.Text;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Microsoft.ML.TaskVectors.Heads;

/// <summary>
/// CLIP's zero-shot classifier (SPEC section 3): logits = exp(logit_scale) · normalize(e)·Cᵀ, where row c of C is
/// the unit-length class embedding normalize(mean over templates of normalize(text_embed(template(class name)))).
/// </summary>
public sealed class ZeroShotHead : ClassificationHead
{
    private ZeroShotHead(Tensor classEmbeddings, float logitScale, IReadOnlyList<string> classNames, IReadOnlyList<string> templates)
        : base(classEmbeddings, classNames)
    {
        LogitScale = logitScale;
        Templates = templates;
    }

    /// <summary>
    /// A zero-shot head from given class embeddings, which are normalised to unit length here.
    /// </summary>
    /// <param name="classEmbeddings">Class embeddings <c>[classes, D]</c>, any floating-point type, no zero row; copied.</param>
    /// <param name="logitScale">
    /// The logarithm of the multiplier, as CLIP's <c>logit_scale</c> parameter (ln 100 ≈ 4.6052 for OpenAI's models);
    /// rounded to float32, as it is stored.
    /// </param>
    /// <param name="classNames">One unique name per class, in row order.</param>
    /// <param name="templates">The prompt templates the embeddings come from, kept as metadata (none when null).</param>
    /// <exception cref="ArgumentException">A shape is wrong, a value is not finite, a row is zero, or the names do not fit.</exception>
    public ZeroShotHead(Tensor classEmbeddings, double logitScale, IReadOnlyList<string> classNames, IReadOnlyList<string>? templates = null)
        : this(Prepare(classEmbeddings, logitScale, classNames, templates))
    {
    }

    private ZeroShotHead((Tensor ClassEmbeddings, float LogitScale, IReadOnlyList<string> ClassNames, IReadOnlyList<string> Templates) parts)
        : this(parts.ClassEmbeddings, parts.LogitScale, parts.ClassNames, parts.Templates)
    {
    }

    /// <inheritdoc />
    public override ClassificationHeadKind Kind => ClassificationHeadKind.ZeroShot;

    /// <summary>The logarithm of the logit multiplier (CLIP's <c>logit_scale</c>).</summary>
    public double LogitScale { get; }

    /// <summary>The logit multiplier exp(<see cref="LogitScale"/>) (100 for OpenAI's CLIP).</summary>
    public double Scale => Math.Exp(LogitScale);

    /// <summary>The prompt templates the class embeddings were built from (empty when unknown).</summary>
    public IReadOnlyList<string> Templates { get; }

    /// <summary>
    /// The class embeddings <c>[classes, D]</c>: unit length when built or constructed, as stored when loaded from a file.
    /// The same tensor as <see cref="ClassificationHead.Weight"/>.
    /// </summary>
    public Tensor ClassEmbeddings => Weight;

    /// <summary>
    /// Builds the head from a CLIP model's text tower: every class name is put in every template, tokenised with
    /// <paramref name="tokenizer"/> (context = the text tower's, longer prompts truncated as CLIP does) and encoded in
    /// batches under no_grad; each class embedding is the normalised mean of its normalised prompt embeddings. The
    /// logit scale is the model's. The head lives on the model's device.
    /// </summary>
    /// <param name="model">A CLIP model with its text tower.</param>
    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="classNames">One unique name per class.</param>
    /// <param name="templates">Prompt templates with <c>{0}</c> for the class name (see <see cref="PromptTemplates"/>).</param>
    /// <param name="batchSize">Prompts encoded at once.</param>
    /// <param name="progress">Receives the fraction of prompts encoded.</param>
    /// <param name="cancellationToken">Stops between batches.</param>
    /// <exception cref="InvalidOperationException">The model has no text tower.</exception>
    /// <exception cref="ArgumentException">
    /// No class or template, a template without <c>{0}</c>, duplicate class names, or a tokenizer that does not
    /// belong to the model (its end-of-text id or a token id does not fit the text tower).
    /// </exception>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public static ZeroShotHead Build(ClipModel model, ClipTokenizer tokenizer, IReadOnlyList<string> classNames, IReadOnlyList<string> templates,
        int batchSize = 64, IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(templates);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        var names = CheckClassNames(classNames, -1, nameof(classNames));
        if (templates.Count == 0) throw new ArgumentException("At least one prompt template is needed.", nameof(templates));
        var text = model.Text?.Config
            ?? throw new InvalidOperationException(
                "This CLIP model has no text tower, which a zero-shot head needs; load the model with loadText: true from a checkpoint that has one.");
        if (tokenizer.EndOfTextId != text.EndOfTextTokenId)
            throw new ArgumentException(
                $"The tokenizer's end-of-text id {tokenizer.EndOfTextId} differs from the text tower's {text.EndOfTextTokenId}; use the model's own tokenizer.",
                nameof(tokenizer));
        // Apply every template once up front, so a template without a placeholder fails before any work.
        int classes = names.Count, perClass = templates.Count, total = classes * perClass;
        var prompts = new string[total];
        for (int c = 0; c < classes; c++)
            for (int t = 0; t < perClass; t++)
                prompts[c * perClass + t] = PromptTemplates.Apply(templates[t] ?? throw new ArgumentException($"Template {t} is null.", nameof(templates)), names[c]);

        var device = model.Device;
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var sums = zeros(classes, model.Config.ProjectionDim, ScalarType.Float32, device);
        progress?.Report(0);
        for (int start = 0; start < total; start += batchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int count = Math.Min(batchSize, total - start);
            using var batchScope = NewDisposeScope();
            var batch = new ArraySegment<string>(prompts, start, count);
            var ids = tokenizer.EncodeBatch(batch, text.ContextLength);
            CheckVocabulary(ids, batch, text.VocabularySize);
            var embeds = F.normalize(model.EncodeText(tensor(ids, device: device)).to(ScalarType.Float32), dim: 1);
            // Row r of the batch is prompt start + r, which belongs to class (start + r) / templates.
            var owners = new long[count];
            for (int r = 0; r < count; r++) owners[r] = (start + r) / perClass;
            sums.index_add_(0, tensor(owners, device: device), embeds, 1);
            progress?.Report((double)(start + count) / total);
        }
        // The mean's 1/templates does not change the direction, so normalising the sum gives the same embedding.
        var classEmbeddings = F.normalize(sums, dim: 1);
        return new ZeroShotHead(classEmbeddings.MoveToOuterDisposeScope().DetachFromDisposeScope(), CheckScale(model.LogitScale.item<float>()), names,
            Array.AsReadOnly(templates.ToArray()));
    }

    /// <summary>Reads a zero-shot head file; see <see cref="ClassificationHead.Load"/>.</summary>
    /// <exception cref="InvalidDataException">The file holds another kind of head, or is malformed; the message names the file.</exception>
    public static new ZeroShotHead Load(string path, Device? device = null) =>
        LoadAs<ZeroShotHead>(path, device, ClassificationHeadKind.ZeroShot);

    /// <inheritdoc />
    public override ZeroShotHead To(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        ThrowIfDisposed();
        if (!SameDevice(device, Device)) Weight = Move(Weight, device);
        return this;
    }

    /// <summary>The head as <see cref="OnnxClassificationHead.ZeroShot(Tensor, float)"/> with multiplier <see cref="Scale"/>.</summary>
    public override OnnxClassificationHead ToOnnxHead()
    {
        ThrowIfDisposed();
        return OnnxClassificationHead.ZeroShot(Weight, (float)Scale);
    }

    /// <summary>A head taking ownership of tensors read from a file, used as stored (no renormalisation).</summary>
    internal static ZeroShotHead FromOwned(Tensor classEmbeddings, float logitScale, IReadOnlyList<string> classNames, IReadOnlyList<string> templates) =>
        new(classEmbeddings.DetachFromDisposeScope(), logitScale, Array.AsReadOnly(classNames.ToArray()), Array.AsReadOnly(templates.ToArray()));

    private protected override Tensor LogitsCore(Tensor embeds) =>
        // F.normalize divides by max(‖e‖, 1e-12), as the ONNX head does, so a zero embedding gives zero logits.
        F.normalize(embeds, dim: 1).matmul(Weight.t()) * Scale;

    private protected override IEnumerable<(string Name, Tensor Tensor)> TensorsToSave()
    {
        yield return (WeightName, Weight);
        yield return (LogitScaleName, tensor((float)LogitScale));
    }

    private protected override void AddMetadata(IDictionary<string, string> metadata) =>
        metadata[TemplatesKey] = HeadFile.ToJson(Templates);

    private static float CheckScale(double logitScale)
    {
        if (!double.IsFinite(logitScale) || !float.IsFinite((float)logitScale) || !double.IsFinite(Math.Exp(logitScale)))
            throw new ArgumentException($"The logit scale (the logarithm of the multiplier) must be finite with a finite exponential, found {logitScale}.", nameof(logitScale));
        return (float)logitScale;
    }

    /// <summary>Validates everything first, then copies and normalises, so a bad argument leaves no tensor behind.</summary>
    private static (Tensor, float, IReadOnlyList<string>, IReadOnlyList<string>) Prepare(Tensor classEmbeddings, double logitScale,
        IReadOnlyList<string> classNames, IReadOnlyList<string>? templates)
    {
        ArgumentNullException.ThrowIfNull(classEmbeddings);
        if (classEmbeddings.ndim != 2 || classEmbeddings.shape[0] < 1 || classEmbeddings.shape[1] < 1)
            throw new ArgumentException($"Class embeddings must be a non-empty [classes, D] matrix, found [{string.Join(", ", classEmbeddings.shape)}].", nameof(classEmbeddings));
        var scale = CheckScale(logitScale);
        var names = CheckClassNames(classNames, classEmbeddings.shape[0], nameof(classNames));
        var kept = (templates ?? []).ToArray();
        if (kept.Any(t => t is null)) throw new ArgumentException("A template is null.", nameof(templates));
        return (Normalized(classEmbeddings), scale, names, Array.AsReadOnly(kept));
    }

    private static Tensor Normalized(Tensor classEmbeddings)
    {
        using var scope = NewDisposeScope();
        using var copy = OwnedCopy(classEmbeddings, classEmbeddings.device, nameof(classEmbeddings), "class embeddings");
        var norms = copy.norm(1, keepdim: true);
        var zero = norms.eq(0).nonzero();
        if (zero.shape[0] > 0)
            throw new ArgumentException($"Class embedding {zero[0, 0].item<long>()} is zero and has no direction.", nameof(classEmbeddings));
        return (copy / norms).MoveToOuterDisposeScope().DetachFromDisposeScope();
    }

    private static void CheckVocabulary(long[,] ids, IReadOnlyList<string> prompts, int vocabularySize)
    {
        for (int row = 0; row < ids.GetLength(0); row++)
            for (int i = 0; i < ids.GetLength(1); i++)
                if (ids[row, i] >= vocabularySize)
                    throw new ArgumentException(
                        $"Prompt \"{prompts[row]}\" encodes to token id {ids[row, i]}, outside the text tower's vocabulary of {vocabularySize}; use the model's own tokenizer.",
                        "tokenizer");
    }
}
