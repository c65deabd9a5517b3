using Microsoft.ML.TaskVectors.Checkpoints;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Trainers.FineTuning;

/// <summary>
/// The pre-trained checkpoint (in Hugging Face names) with its vision tensors replaced by the fine-tuned ones (F32):
/// what a complete fine-tuned checkpoint holds, streamed tensor by tensor.
/// </summary>
internal sealed class FineTunedCheckpoint : Checkpoint
{
    private readonly Checkpoint _pretrained;
    private readonly IReadOnlyDictionary<string, Tensor> _finetuned;
    private readonly TensorInfo[] _tensors;

    /// <param name="pretrained">The pre-trained checkpoint; not owned.</param>
    /// <param name="finetuned">The fine-tuned tensors by name (module parameters: read, never disposed).</param>
    public FineTunedCheckpoint(Checkpoint pretrained, IReadOnlyDictionary<string, Tensor> finetuned)
    {
        _pretrained = pretrained;
        _finetuned = finetuned;
        _tensors = pretrained.Tensors
            .Select(t => finetuned.ContainsKey(t.Name) ? t with { DType = TensorDType.F32 } : t)
            .ToArray();
    }

    public override string Location => $"{_pretrained.Location} (fine-tuned)";

    public override IReadOnlyList<TensorInfo> Tensors => _tensors;

    protected override Tensor ReadCore(TensorInfo info) =>
        // detach() makes a new handle, so the writer disposing it leaves the parameter alone.
        _finetuned.TryGetValue(info.Name, out var t) ? t.detach().cpu() : _pretrained.Read(info.Name);
}
