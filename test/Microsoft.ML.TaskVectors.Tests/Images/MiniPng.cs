using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace Microsoft.ML.TaskVectors.Tests.Images;

/// <summary>
/// Writes PNG files byte by byte (no filtering), for the colour types SkiaSharp's encoder does not
/// produce: palette, grey + alpha, 16-bit.
/// </summary>
internal static class MiniPng
{
    public const byte Grey = 0, Rgb = 2, Palette = 3, GreyAlpha = 4, Rgba = 6;

    /// <param name="rows">The raw scanlines without filter bytes, row after row.</param>
    public static byte[] Encode(int width, int height, byte colorType, byte bitDepth, byte[] rows, byte[]? palette = null)
    {
        var stride = rows.Length / height;
        var filtered = new MemoryStream();
        for (var y = 0; y < height; y++)
        {
            filtered.WriteByte(0);
            filtered.Write(rows, y * stride, stride);
        }
        var compressed = new MemoryStream();
        using (var z = new ZLibStream(compressed, CompressionLevel.Optimal, leaveOpen: true))
            z.Write(filtered.ToArray());

        var png = new MemoryStream();
        png.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = bitDepth;
        ihdr[9] = colorType;
        Chunk(png, "IHDR", ihdr);
        if (palette is not null) Chunk(png, "PLTE", palette);
        Chunk(png, "IDAT", compressed.ToArray());
        Chunk(png, "IEND", []);
        return png.ToArray();
    }

    private static void Chunk(Stream s, string type, byte[] data)
    {
        var head = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(head, data.Length);
        s.Write(head);
        var typed = Encoding.ASCII.GetBytes(type).Concat(data).ToArray();
        s.Write(typed);
        BinaryPrimitives.WriteUInt32BigEndian(head, Crc32(typed));
        s.Write(head);
    }

    private static uint Crc32(byte[] data)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in data)
        {
            crc ^= b;
            for (var k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
        }
        return ~crc;
    }
}
