using System.Text;
using Microsoft.ML.TaskVectors.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Checkpoints;

public class SafetensorsTests
{
    /// <summary>Builds a safetensors file by hand, independent of <see cref="SafetensorsWriter"/>.</summary>
    internal static byte[] HandWritten(string headerJson, byte[] data, int? declaredHeaderLength = null)
    {
        var header = Encoding.UTF8.GetBytes(headerJson);
        var bytes = new byte[8 + header.Length + data.Length];
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 8), (ulong)(declaredHeaderLength ?? header.Length));
        header.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + header.Length);
        return bytes;
    }

    private static byte[] Floats(params float[] values) => values.SelectMany(BitConverter.GetBytes).ToArray();

    [Test]
    public void ReadsHandWrittenFileWithMetadataScalarAndInt64Buffer()
    {
        using var dir = new TempDirectory();
        var path = dir.File("hand.safetensors");
        var data = Floats(1f, 2f, 3f, 4f, 5f, 6f).Concat(BitConverter.GetBytes(7L)).Concat(Floats(0.5f)).ToArray();
        File.WriteAllBytes(path, HandWritten(
            """{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"ids":{"dtype":"I64","shape":[1],"data_offsets":[24,32]},"s":{"dtype":"F32","shape":[],"data_offsets":[32,36]}}""",
            data));

        using var ckpt = Checkpoint.Open(path);
        Assert.That(ckpt.Tensors.Select(t => t.Name), Is.EqualTo(new[] { "ids", "s", "w" }));
        Assert.That(ckpt.Metadata["format"], Is.EqualTo("pt"));
        using var w = ckpt.ReadFloat32("w");
        Assert.That(w.shape, Is.EqualTo(new long[] { 2, 3 }));
        Assert.That(w.data<float>().ToArray(), Is.EqualTo(new[] { 1f, 2f, 3f, 4f, 5f, 6f }));
        using var ids = ckpt.Read("ids");
        Assert.That(ids.dtype, Is.EqualTo(ScalarType.Int64));
        Assert.That(ids.ReadCpuInt64(0), Is.EqualTo(7L));
        using var s = ckpt.ReadFloat32("s");
        Assert.That(s.shape, Is.Empty);
        Assert.That(s.item<float>(), Is.EqualTo(0.5f));
        var e = Assert.Throws<InvalidOperationException>(() => ckpt.ReadFloat32("ids"))!;
        Assert.That(e.Message, Does.Contain("'ids'").And.Contain("I64"));
    }

    [TestCase(TensorDType.F32)]
    [TestCase(TensorDType.F16)]
    [TestCase(TensorDType.BF16)]
    [TestCase(TensorDType.F64)]
    public void RoundTripsFloatTensorsPerDType(TensorDType dtype)
    {
        using var dir = new TempDirectory();
        var path = dir.File("rt.safetensors");
        // Values exactly representable in every tested type (small dyadic rationals).
        var values = new float[] { -2f, -0.75f, 0f, 0.125f, 1f, 3.5f, 1024f, -6f };
        var type = dtype.ToScalarType()!.Value;
        using var a = tensor(values).reshape(2, 4).to(type);
        using var b = tensor(new float[] { 42f }).reshape(Array.Empty<long>()).to(type);
        SafetensorsWriter.Save(path, new Dictionary<string, Tensor> { ["a"] = a, ["b.scalar"] = b }, new Dictionary<string, string> { ["k"] = "v" });

        using var ckpt = SafetensorsReader.Open(path);
        Assert.That(ckpt.GetInfo("a").DType, Is.EqualTo(dtype));
        Assert.That(ckpt.Metadata["k"], Is.EqualTo("v"));
        using var ra = ckpt.Read("a");
        Assert.That(ra.dtype, Is.EqualTo(type));
        using var fa = ckpt.ReadFloat32("a");
        Assert.That(fa.data<float>().ToArray(), Is.EqualTo(values));
        using var fb = ckpt.ReadFloat32("b.scalar");
        Assert.That(fb.item<float>(), Is.EqualTo(42f));
        // Data is 8-byte aligned, as the format's reference writer does.
        ulong headerLength = BitConverter.ToUInt64(File.ReadAllBytes(path).AsSpan(0, 8));
        Assert.That((8 + headerLength) % 8, Is.EqualTo(0UL));
    }

    [Test]
    public void WriterConvertsFloat32ToDeclaredHalfTypes()
    {
        using var dir = new TempDirectory();
        var path = dir.File("half.safetensors");
        using (var w = SafetensorsWriter.Create(path, new[] { new TensorInfo("x", TensorDType.BF16, new long[] { 3 }) }))
        {
            using var x = tensor(new float[] { 1f, 1.00390625f, -3f }); // 1 + 2^-8 is not a bfloat16: it rounds to 1
            w.Write("x", x);
            w.Commit();
        }
        using var r = SafetensorsReader.Open(path);
        var raw = new byte[6];
        r.ReadBytes("x", raw);
        // bfloat16 is the upper half of float32: 1.0 = 0x3F80, -3.0 = 0xC040.
        Assert.That(raw, Is.EqualTo(new byte[] { 0x80, 0x3F, 0x80, 0x3F, 0x40, 0xC0 }));
    }

    [Test]
    public void UncommittedWriterLeavesNoFileAndKeepsThePreviousOne()
    {
        using var dir = new TempDirectory();
        var path = dir.File("keep.safetensors");
        File.WriteAllText(path, "old");
        using (var w = SafetensorsWriter.Create(path, new[] { new TensorInfo("x", TensorDType.F32, new long[] { 1 }) }))
        {
            Assert.Throws<InvalidOperationException>(() => w.Commit());
        }
        Assert.That(File.ReadAllText(path), Is.EqualTo("old"));
        Assert.That(Directory.GetFiles(dir.Path), Has.Length.EqualTo(1));
    }

    [Test]
    public void WriterRejectsOutOfOrderAndWrongShape()
    {
        using var dir = new TempDirectory();
        using var w = SafetensorsWriter.Create(dir.File("o.safetensors"), new[]
        {
            new TensorInfo("first", TensorDType.F32, new long[] { 2 }),
            new TensorInfo("second", TensorDType.F32, new long[] { 2 }),
        });
        using var t = zeros(2);
        using var wrong = zeros(3);
        Assert.That(Assert.Throws<InvalidOperationException>(() => w.Write("second", t))!.Message, Does.Contain("expected tensor 'first'"));
        Assert.That(Assert.Throws<ArgumentException>(() => w.Write("first", wrong))!.Message, Does.Contain("[2]").And.Contain("[3]"));
    }

    private static string Malformed(byte[] bytes)
    {
        using var dir = new TempDirectory();
        var path = dir.File("bad.safetensors");
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<CheckpointFormatException>(() => SafetensorsReader.Open(path).Dispose())!;
        Assert.That(e.Message, Does.StartWith(path));
        return e.Message;
    }

    [Test]
    public void WriterTakesPartsInAnyOrderFromSeveralThreads_AndReadsThemBack()
    {
        using var dir = new TempDirectory();
        var path = dir.File("parts.safetensors");
        var a = Enumerable.Range(0, 1000).Select(i => (float)i).ToArray();
        var b = new byte[] { 9, 8, 7 };
        var tensors = new[] { new TensorInfo("a", TensorDType.F32, new long[] { 10, 100 }), new TensorInfo("b", TensorDType.U8, new long[] { 3 }) };
        using (var w = SafetensorsWriter.Create(path, tensors))
        {
            var bytes = Floats(a);
            // 13 parts of the float tensor, written backwards and two at a time, then the byte tensor.
            Parallel.ForEach(Enumerable.Range(0, 13).Reverse(), new ParallelOptions { MaxDegreeOfParallelism = 2 }, k =>
            {
                int start = k * 4 * 77, end = Math.Min(bytes.Length, start + 4 * 77);
                w.WriteBytesAt("a", start, bytes.AsSpan(start, end - start));
            });
            w.WriteBytesAt("b", 0, b);
            w.OverwriteBytesAt("a", 4 * 5, BitConverter.GetBytes(-1f)); // a correction, not counted
            Assert.Throws<InvalidOperationException>(() => w.WriteBytes("a", bytes), "whole writes after parts");
            w.Commit();
        }

        using var r = SafetensorsReader.Open(path);
        a[5] = -1f;
        Assert.That(r.ReadFloat32("a").data<float>().ToArray(), Is.EqualTo(a));
        var back = new byte[3];
        r.ReadBytes("b", back);
        Assert.That(back, Is.EqualTo(b));
        var part = new byte[8];
        r.ReadBytes("a", 4 * 998, part);
        Assert.That(part, Is.EqualTo(Floats(998f, 999f)), "a part of a tensor reads alone");
        Assert.Throws<ArgumentOutOfRangeException>(() => r.ReadBytes("a", 4 * 999, part));
        Assert.That(new FileInfo(path).Length, Is.EqualTo(8 + BitConverter.ToInt64(File.ReadAllBytes(path), 0) + 4003), "no bytes beyond the data");
    }

    [Test]
    public void WriterInPartsRefusesMissingBytesAndPartsOutsideTheTensor()
    {
        using var dir = new TempDirectory();
        var path = dir.File("short.safetensors");
        using (var w = SafetensorsWriter.Create(path, new[] { new TensorInfo("x", TensorDType.F32, new long[] { 4 }) }))
        {
            w.WriteBytesAt("x", 0, Floats(1f, 2f, 3f));
            var outside = Assert.Throws<ArgumentOutOfRangeException>(() => w.WriteBytesAt("x", 12, Floats(1f, 2f)));
            Assert.That(outside!.Message, Does.Contain("'x'"));
            Assert.Throws<ArgumentException>(() => w.WriteBytesAt("y", 0, Floats(1f)));
            var missing = Assert.Throws<InvalidOperationException>(() => w.Commit());
            Assert.That(missing!.Message, Does.Contain("'x' got 12 of its 16 bytes"));
        }

        Assert.That(File.Exists(path), Is.False, "nothing is left behind");
    }

    [Test]
    public void RejectsHeaderOverTheLimit() =>
        Assert.That(Malformed(HandWritten("{}", Array.Empty<byte>(), declaredHeaderLength: 100_000_001)), Does.Contain("exceeds the limit"));

    [Test]
    public void RejectsBadJson() =>
        Assert.That(Malformed(HandWritten("{\"w\": ", Array.Empty<byte>())), Does.Contain("not valid UTF-8 JSON"));

    [Test]
    public void RejectsOverlappingOffsets() =>
        Assert.That(Malformed(HandWritten(
            """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", new byte[12])),
            Does.Contain("overlaps"));

    [Test]
    public void RejectsGapsBetweenTensors() =>
        Assert.That(Malformed(HandWritten(
            """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""", new byte[12])),
            Does.Contain("gap"));

    [Test]
    public void RejectsSizeThatDoesNotMatchShapeAndDType() =>
        Assert.That(Malformed(HandWritten("""{"a":{"dtype":"F16","shape":[3],"data_offsets":[0,4]}}""", new byte[4])),
            Does.Contain("'a'").And.Contain("needs 6"));

    [Test]
    public void RejectsTruncatedData() =>
        Assert.That(Malformed(HandWritten("""{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", new byte[10])),
            Does.Contain("truncated"));

    [Test]
    public void RejectsTruncatedHeader() =>
        Assert.That(Malformed(HandWritten("{}", Array.Empty<byte>(), declaredHeaderLength: 64)), Does.Contain("truncated"));

    [Test]
    public void RejectsTrailingBytes() =>
        Assert.That(Malformed(HandWritten("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", new byte[8])),
            Does.Contain("size mismatch"));

    [Test]
    public void RejectsUnknownDType() =>
        Assert.That(Malformed(HandWritten("""{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}""", new byte[1])),
            Does.Contain("unknown dtype 'F8_E4M3'"));

    [Test]
    public void RejectsFileShorterThanThePrefix() =>
        Assert.That(Malformed(new byte[3]), Does.Contain("too short"));

    [Test]
    public void OpeningDoesNotReadTensorData()
    {
        // A 64 MB tensor whose data region is sparse: opening must cost only the header.
        using var dir = new TempDirectory();
        var path = dir.File("big.safetensors");
        const long n = 16 * 1024 * 1024;
        var header = Encoding.UTF8.GetBytes("{\"big\":{\"dtype\":\"F32\",\"shape\":[" + n + "],\"data_offsets\":[0," + n * 4 + "]},"
            + "\"tail\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[" + n * 4 + "," + (n * 4 + 4) + "]}}");
        using (var fs = File.Create(path))
        {
            fs.Write(BitConverter.GetBytes((ulong)header.Length));
            fs.Write(header);
            fs.SetLength(8 + header.Length + n * 4 + 4);
            fs.Seek(-4, SeekOrigin.End);
            fs.Write(BitConverter.GetBytes(9.25f));
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        using var ckpt = SafetensorsReader.Open(path);
        using var tail = ckpt.ReadFloat32("tail");
        long managed = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(tail.item<float>(), Is.EqualTo(9.25f));
        Assert.That(managed, Is.LessThan(1_000_000), "opening and reading one small tensor must not buffer the file");
    }

    [Test]
    public void ShardedIndexResolvesTensorsAcrossShards()
    {
        using var dir = new TempDirectory();
        using var a = tensor(new float[] { 1, 2 });
        using var b = tensor(new float[] { 3 });
        SafetensorsWriter.Save(dir.File("model-00001-of-00002.safetensors"), new Dictionary<string, Tensor> { ["a"] = a });
        SafetensorsWriter.Save(dir.File("model-00002-of-00002.safetensors"), new Dictionary<string, Tensor> { ["b"] = b });
        File.WriteAllText(dir.File("model.safetensors.index.json"),
            """{"metadata":{"total_size":12},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}""");

        using var ckpt = Checkpoint.Open(dir.Path);
        Assert.That(ckpt, Is.InstanceOf<ShardedCheckpoint>());
        Assert.That(ckpt.Tensors.Select(t => t.Name), Is.EqualTo(new[] { "a", "b" }));
        using var rb = ckpt.ReadFloat32("b");
        Assert.That(rb.data<float>().ToArray(), Is.EqualTo(new[] { 3f }));
        Assert.That(ckpt.Metadata["total_size"], Is.EqualTo("12"));
    }

    [Test]
    public void ShardedIndexNamingAMissingTensorFails()
    {
        using var dir = new TempDirectory();
        using var a = tensor(new float[] { 1 });
        SafetensorsWriter.Save(dir.File("s1.safetensors"), new Dictionary<string, Tensor> { ["a"] = a });
        File.WriteAllText(dir.File("model.safetensors.index.json"), """{"weight_map":{"a":"s1.safetensors","zz":"s1.safetensors"}}""");
        var e = Assert.Throws<CheckpointFormatException>(() => Checkpoint.Open(dir.Path))!;
        Assert.That(e.Message, Does.Contain("'zz'").And.Contain("s1.safetensors"));
    }

    [Test]
    public void FolderWithoutCheckpointNamesWhatWasExpected()
    {
        using var dir = new TempDirectory();
        var e = Assert.Throws<FileNotFoundException>(() => Checkpoint.Open(dir.Path))!;
        Assert.That(e.Message, Does.Contain(dir.Path).And.Contain("model.safetensors"));
    }

    [Test]
    public void HuggingFaceFolderOpensModelSafetensors()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("config.json"), "{}");
        using var a = tensor(new float[] { 5 });
        SafetensorsWriter.Save(dir.File("model.safetensors"), new Dictionary<string, Tensor> { ["a"] = a });
        using var ckpt = Checkpoint.Open(dir.Path);
        Assert.That(ckpt.Location, Is.EqualTo(dir.File("model.safetensors")));
    }
}
