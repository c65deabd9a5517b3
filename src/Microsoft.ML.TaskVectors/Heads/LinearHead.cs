using Microsoft.ML.TaskVectors.Onnx;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Microsoft.ML.TaskVectors.Heads;

/// <summary>A linear classification head on raw (unnormalised) image embeddings: logits = e·Wᵀ + b.</summary>
public sealed class LinearHead : ClassificationHead
{
    /// <summary>A linear head from explicit tensors, which are copied as float32.</summary>
    /// <param name="weight">Weight <c>[classes, D]</c>, any floating-point type.</param>
    /// <param name="bias">Bias <c>[classes]</c>, or null for none.</param>
    /// <param name="classNames">One unique name per class, in row order.</param>
    /// <exception cref="ArgumentException">A shape is wrong, a value is not finite, or the names do not fit.</exception>
    public LinearHead(Tensor weight, Tensor? bias, IReadOnlyList<string> classNames)
        : this(Copies(weight, bias, classNames))
    {
    }

    // The tensors are already the head's own copies.
    private LinearHead((Tensor Weight, Tensor? Bias, IReadOnlyList<string> ClassNames) parts)
        : base(parts.Weight, parts.ClassNames)
    {
        Bias = parts.Bias;
    }

    /// <inheritdoc />
    public override ClassificationHeadKind Kind => ClassificationHeadKind.Linear;

    /// <summary>The bias <c>[classes]</c> (float32), or null. The tensor belongs to the head: do not modify or dispose it.</summary>
    public Tensor? Bias { get; private set; }

    /// <summary>
    /// Fits a linear probe on frozen features: multinomial logistic regression by full-batch L-BFGS (see
    /// <see cref="LinearProbeOptions"/>). Deterministic: the same inputs give the same head.
    /// </summary>
    /// <param name="features">Raw image embeddings <c>[N, D]</c>, floating point and finite.</param>
    /// <param name="labels">Class indices <c>[N]</c>, an integer tensor with values in [0, classes).</param>
    /// <param name="classNames">One unique name per class; their number is the number of classes.</param>
    /// <param name="options">Regularisation, iterations, device; defaults when null.</param>
    /// <param name="progress">Receives the fraction of the iteration limit used (1 at the end).</param>
    /// <param name="cancellationToken">Stops between iterations.</param>
    /// <exception cref="ArgumentException">Shapes disagree, a label is out of range, or a feature is not finite.</exception>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public static LinearHead Fit(Tensor features, Tensor labels, IReadOnlyList<string> classNames, LinearProbeOptions? options = null,
        IProgress<double>? progress = null, CancellationToken cancellationToken = default) =>
        FitWithReport(features, labels, classNames, options, progress, cancellationToken).Head;

    /// <summary>Fits a linear probe with labels given as an array; see <see cref="Fit(Tensor, Tensor, IReadOnlyList{string}, LinearProbeOptions?, IProgress{double}?, CancellationToken)"/>.</summary>
    public static LinearHead Fit(Tensor features, long[] labels, IReadOnlyList<string> classNames, LinearProbeOptions? options = null,
        IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(labels);
        using var labelTensor = tensor(labels);
        return Fit(features, labelTensor, classNames, options, progress, cancellationToken);
    }

    /// <summary>
    /// Fits a linear probe as <see cref="Fit(Tensor, Tensor, IReadOnlyList{string}, LinearProbeOptions?, IProgress{double}?, CancellationToken)"/>
    /// and reports the L2 strength used, the iterations, convergence, the objective's history and the training accuracy.
    /// </summary>
    public static LinearProbeResult FitWithReport(Tensor features, Tensor labels, IReadOnlyList<string> classNames, LinearProbeOptions? options = null,
        IProgress<double>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(labels);
        options ??= new LinearProbeOptions();
        options.Validate();
        if (features.ndim != 2 || features.shape[0] < 1 || features.shape[1] < 1)
            throw new ArgumentException($"Features must be a non-empty [N, D] matrix, found [{string.Join(", ", features.shape)}].", nameof(features));
        if (!features.is_floating_point())
            throw new ArgumentException($"Features must be floating point, found {features.dtype}.", nameof(features));
        long n = features.shape[0], d = features.shape[1];
        var names = CheckClassNames(classNames, -1, nameof(classNames));
        int classes = names.Count;
        var y = CheckedLabels(labels, n, classes);
        var device = options.Device ?? features.device;

        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var x = features.detach().to(ScalarType.Float64, device);
        var finite = x.isfinite();
        if (!finite.all().item<bool>())
        {
            var bad = finite.logical_not().nonzero()[0];
            throw new ArgumentException($"Features hold a NaN or infinite value (first at row {bad[0].item<long>()}, column {bad[1].item<long>()}).", nameof(features));
        }
        double l2 = options.L2 ?? LinearProbeOptions.DefaultRelativeL2 * x.square().mean().item<double>();

        // Standardise for conditioning: x̃ = (x − μ)/s with one global scale s. Centring needs a bias to absorb it.
        var mu = options.FitBias ? x.mean([0L]) : zeros(d, ScalarType.Float64, device);
        var centred = x - mu;
        double s = Math.Sqrt(centred.square().mean().item<double>());
        if (!(s > 0) || !double.IsFinite(s)) s = 1;
        var xs = centred / s;
        // Only the standardised copy is needed from here on; N×D float64 matrices are worth freeing early.
        centred.Dispose();
        x.Dispose();
        // (λ/2)‖W‖² with W = W̃/s is (λ/s²)/2 · ‖W̃‖²: the same objective, so the same minimiser.
        double l2Scaled = l2 / (s * s);
        var labelTensor = tensor(y, device: device);
        var oneHot = F.one_hot(labelTensor, classes).to(ScalarType.Float64);
        long weightCount = classes * d;
        int parameterCount = checked((int)(weightCount + (options.FitBias ? classes : 0)));

        (double, double[]) Objective(double[] theta)
        {
            using var inner = NewDisposeScope();
            var p = tensor(theta, device: device);
            var w = p.narrow(0, 0, weightCount).view(classes, d);
            var z = xs.matmul(w.t());
            if (options.FitBias) z = z + p.narrow(0, weightCount, classes);
            var lse = z.logsumexp(1, keepdim: true);
            // Mean cross-entropy = mean(logsumexp − z[label]); its gradient wrt z is (softmax − one-hot)/N.
            double value = (lse - z).mul(oneHot).sum().item<double>() / n + 0.5 * l2Scaled * w.square().sum().item<double>();
            var residual = ((z - lse).exp() - oneHot) / n;
            var gradW = residual.t().matmul(xs) + l2Scaled * w;
            var grad = options.FitBias ? cat([gradW.flatten(), residual.sum(dim: 0)], 0) : gradW.flatten();
            return (value, grad.cpu().data<double>().ToArray());
        }

        int limit = options.MaxIterations;
        progress?.Report(0);
        var outcome = Lbfgs.Minimize(Objective, new double[parameterCount], limit, options.GradientTolerance, options.HistorySize,
            iteration => progress?.Report((double)iteration / limit), cancellationToken);

        var solution = tensor(outcome.Solution, device: device);
        var weight = solution.narrow(0, 0, weightCount).view(classes, d) / s;
        // Folding the centring back: x̃·W̃ᵀ + b̃ = x·Wᵀ + (b̃ − W·μ).
        var bias = options.FitBias ? solution.narrow(0, weightCount, classes) - weight.matmul(mu) : null;
        var head = new LinearHead((OwnFloat32(weight), bias is null ? null : OwnFloat32(bias), names));
        var correct = head.Predict(features.detach().to(device)).eq(labelTensor).sum().item<long>();
        progress?.Report(1);
        return new LinearProbeResult(head, l2, outcome.Iterations, outcome.Converged, outcome.Values, (double)correct / n);
    }

    /// <summary>Reads a linear head file; see <see cref="ClassificationHead.Load"/>.</summary>
    /// <exception cref="InvalidDataException">The file holds another kind of head, or is malformed; the message names the file.</exception>
    public static new LinearHead Load(string path, Device? device = null) =>
        LoadAs<LinearHead>(path, device, ClassificationHeadKind.Linear);

    /// <inheritdoc />
    public override LinearHead To(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        ThrowIfDisposed();
        if (SameDevice(device, Device)) return this;
        Weight = Move(Weight, device);
        if (Bias is not null) Bias = Move(Bias, device);
        return this;
    }

    /// <summary>The head as <see cref="OnnxClassificationHead.Linear(Tensor, Tensor?)"/>.</summary>
    public override OnnxClassificationHead ToOnnxHead()
    {
        ThrowIfDisposed();
        return OnnxClassificationHead.Linear(Weight, Bias);
    }

    /// <summary>A head taking ownership of tensors read from a file.</summary>
    internal static LinearHead FromOwned(Tensor weight, Tensor? bias, IReadOnlyList<string> classNames) =>
        new((weight.DetachFromDisposeScope(), bias?.DetachFromDisposeScope(), Array.AsReadOnly(classNames.ToArray())));

    private protected override Tensor LogitsCore(Tensor embeds) => F.linear(embeds, Weight, Bias);

    private protected override IEnumerable<(string Name, Tensor Tensor)> TensorsToSave()
    {
        yield return (WeightName, Weight);
        if (Bias is not null) yield return (BiasName, Bias);
    }

    private protected override void DisposeOtherTensors() => Bias?.Dispose();

    private static Tensor OwnFloat32(Tensor t) => t.to(ScalarType.Float32).contiguous().clone().MoveToOuterDisposeScope().DetachFromDisposeScope();

    /// <summary>Validates everything first, then copies, so a bad argument leaves no tensor behind.</summary>
    private static (Tensor, Tensor?, IReadOnlyList<string>) Copies(Tensor weight, Tensor? bias, IReadOnlyList<string> classNames)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.ndim != 2 || weight.shape[0] < 1 || weight.shape[1] < 1)
            throw new ArgumentException($"A linear head's weight must be a non-empty [classes, D] matrix, found [{string.Join(", ", weight.shape)}].", nameof(weight));
        if (bias is not null && (bias.ndim != 1 || bias.shape[0] != weight.shape[0]))
            throw new ArgumentException($"A linear head's bias must be [{weight.shape[0]}] to match the weight's classes, found [{string.Join(", ", bias.shape)}].", nameof(bias));
        var names = CheckClassNames(classNames, weight.shape[0], nameof(classNames));
        var w = OwnedCopy(weight, weight.device, nameof(weight), "linear head weight");
        try
        {
            return (w, bias is null ? null : OwnedCopy(bias, weight.device, nameof(bias), "linear head bias"), names);
        }
        catch
        {
            w.Dispose();
            throw;
        }
    }

    private static long[] CheckedLabels(Tensor labels, long rows, int classes)
    {
        if (labels.ndim != 1 || labels.shape[0] != rows)
            throw new ArgumentException($"Labels must be [{rows}], one per feature row, found [{string.Join(", ", labels.shape)}].", nameof(labels));
        if (labels.is_floating_point() || labels.is_complex() || labels.dtype == ScalarType.Bool)
            throw new ArgumentException($"Labels must be an integer tensor of class indices, found {labels.dtype}.", nameof(labels));
        long[] values;
        using (var scope = NewDisposeScope())
            values = labels.detach().to(ScalarType.Int64, CPU).contiguous().data<long>().ToArray();
        for (int i = 0; i < values.Length; i++)
            if (values[i] < 0 || values[i] >= classes)
                throw new ArgumentException($"Label {i} is {values[i]}, outside [0, {classes}) for {classes} class names.", nameof(labels));
        return values;
    }
}
