using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Checkpoints;

/// <summary>Moves raw bytes in and out of contiguous CPU tensors in chunks (spans are limited to 2 GB).</summary>
internal static class TensorBytes
{
    private const long ChunkBytes = 1L << 30;

    /// <summary>Span handler with the span's byte offset from the start of the tensor.</summary>
    public delegate void ChunkAction(Span<byte> chunk, long byteOffset);

    /// <summary>Calls <paramref name="action"/> on each chunk of the tensor's memory, in order, to fill or read it.</summary>
    public static void ForEachChunk(Tensor tensor, ChunkAction action)
    {
        if (!tensor.is_contiguous() || tensor.device_type != TorchSharp.DeviceType.CPU)
            throw new ArgumentException("A contiguous CPU tensor is required.", nameof(tensor));
        long total = tensor.NumberOfElements * tensor.ElementSize;
        if (total == 0) return;
        if (total <= ChunkBytes)
        {
            action(tensor.bytes, 0);
            return;
        }
        using var flat = tensor.view(-1);
        long perChunk = ChunkBytes / tensor.ElementSize;
        for (long start = 0; start < tensor.NumberOfElements; start += perChunk)
        {
            using var part = flat.narrow(0, start, Math.Min(perChunk, tensor.NumberOfElements - start));
            action(part.bytes, start * tensor.ElementSize);
        }
    }
}
