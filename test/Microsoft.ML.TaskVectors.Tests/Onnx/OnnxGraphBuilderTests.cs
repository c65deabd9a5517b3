using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.TaskVectors.Onnx;
using static Microsoft.ML.TaskVectors.Tests.Onnx.OnnxTestRuntime;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Tests.Onnx;

public class OnnxGraphBuilderTests
{
    [Test]
    public void Gemm_LinearLayer_MatchesHandComputedValues()
    {
        var b = new OnnxGraphBuilder("linear");
        var x = b.AddInput("x", OnnxElementType.Float, "batch", 3);
        // W rows: e1, e2, e3, 1+1+1;  b = [0.5, -1, 0, 2]
        var w = b.AddInitializer("w", [1f, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1], [4, 3]);
        var bias = b.AddInitializer("b", [0.5f, -1, 0, 2], [4]);
        b.AddOutput(b.Gemm(x, w, bias, transB: true, name: "y"), OnnxElementType.Float, "batch", 4);

        var y = Run(b.ToBytes(), ("x", [1f, 2, 3, 4, 5, 6], [2, 3]))["y"];

        // [1,2,3]·Wᵀ + b = [1.5, 1, 3, 8];  [4,5,6]·Wᵀ + b = [4.5, 4, 6, 17]
        Assert.That(y.Shape, Is.EqualTo(new long[] { 2, 4 }));
        Assert.That(y.Data, Is.EqualTo(new[] { 1.5f, 1, 3, 8, 4.5f, 4, 6, 17 }).Within(1e-6));
    }

    [Test]
    public void Gemm_AlphaBetaAndTransposedA()
    {
        var b = new OnnxGraphBuilder();
        var a = b.AddInput("a", OnnxElementType.Float, 2, 2);
        var m = b.AddInitializer("m", [1f, 2, 3, 4], [2, 2]);
        var c = b.AddInitializer("c", [1f, 1], [2]);
        b.AddOutput(b.Gemm(a, m, c, alpha: 2f, beta: 0.5f, transA: true, name: "y"), OnnxElementType.Float, 2, 2);

        // A = [[1,2],[3,4]], Aᵀ = [[1,3],[2,4]], Aᵀ·M = [[10,14],[14,20]];  2·that + 0.5 = [[20.5,28.5],[28.5,40.5]]
        var y = Run(b.ToBytes(), ("a", [1f, 2, 3, 4], [2, 2]))["y"];
        Assert.That(y.Data, Is.EqualTo(new[] { 20.5f, 28.5f, 28.5f, 40.5f }).Within(1e-5));
    }

    [Test]
    public void LayerNormalization_MatchesFormula()
    {
        var b = new OnnxGraphBuilder();
        var x = b.AddInput("x", OnnxElementType.Float, "batch", 4);
        var scale = b.AddInitializer("scale", [1f, 2, 1, 1], [4]);
        var bias = b.AddInitializer("bias", [0f, 0, 0, 1], [4]);
        b.AddOutput(b.LayerNormalization(x, scale, bias, epsilon: 1e-5f, name: "y"), OnnxElementType.Float, "batch", 4);

        var y = Run(b.ToBytes(), ("x", [1f, 2, 3, 4, 10, 10, 10, 10], [2, 4]))["y"];

        // Row 1: mean 2.5, variance 1.25 → (x − 2.5)/√(1.25 + 1e-5) · scale + bias.
        double s = Math.Sqrt(1.25 + 1e-5);
        var row1 = new[] { -1.5 / s, 2 * (-0.5 / s), 0.5 / s, 1.5 / s + 1 }.Select(v => (float)v);
        // Row 2: constant, so (x − mean) = 0 and only the bias remains.
        Assert.That(y.Data, Is.EqualTo(row1.Concat([0f, 0, 0, 1])).Within(1e-5));
    }

    [Test]
    public void Softmax_LastAxis()
    {
        var b = new OnnxGraphBuilder();
        var x = b.AddInput("x", OnnxElementType.Float, 2, 3);
        b.AddOutput(b.Softmax(x, name: "p"), OnnxElementType.Float, 2, 3);

        // exp(0), exp(ln 2), exp(ln 3) = 1, 2, 3 → /6;  equal logits → 1/3 each
        var p = Run(b.ToBytes(), ("x", [0f, MathF.Log(2), MathF.Log(3), 7, 7, 7], [2, 3]))["p"];
        Assert.That(p.Data, Is.EqualTo(new[] { 1f / 6, 2f / 6, 3f / 6, 1f / 3, 1f / 3, 1f / 3 }).Within(1e-6));
    }

    [Test]
    public void Conv_StrideAndPadding_MatchHandComputedValues()
    {
        var b = new OnnxGraphBuilder();
        var x = b.AddInput("x", OnnxElementType.Float, "batch", 1, 3, 3);
        var k = b.AddInitializer("k", [1f, 1, 1, 1], [1, 1, 2, 2]);
        var bias = b.AddInitializer("kb", [0.5f], [1]);
        b.AddOutput(b.Conv(x, k, name: "valid"), OnnxElementType.Float, "batch", 1, 2, 2);
        b.AddOutput(b.Conv(x, k, bias, strides: [2, 2], pads: [1, 1, 1, 1], name: "strided"), OnnxElementType.Float, "batch", 1, 2, 2);

        var outputs = Run(b.ToBytes(), ("x", [1f, 2, 3, 4, 5, 6, 7, 8, 9], [1, 1, 3, 3]));

        // [[1,2,3],[4,5,6],[7,8,9]] ⊛ ones(2,2): 1+2+4+5 = 12, 2+3+5+6 = 16, 4+5+7+8 = 24, 5+6+8+9 = 28
        Assert.That(outputs["valid"].Data, Is.EqualTo(new[] { 12f, 16, 24, 28 }));
        // Zero-padded to 5×5, stride 2: windows {1}, {2,3}, {4,7}, {5,6,8,9}, plus 0.5
        Assert.That(outputs["strided"].Data, Is.EqualTo(new[] { 1.5f, 5.5f, 11.5f, 28.5f }));
    }

    [Test]
    public void ShapeOps_ReshapeTransposeConcatGatherSliceSqueezeExpandCast()
    {
        var b = new OnnxGraphBuilder();
        var x = b.AddInput("x", OnnxElementType.Float, 2, 3);                              // [[0,1,2],[3,4,5]]
        b.AddOutput(b.Transpose(x, [1, 0], name: "t"), OnnxElementType.Float, 3, 2);
        b.AddOutput(b.Reshape(x, [3, -1], name: "r"), OnnxElementType.Float, 3, 2);
        b.AddOutput(b.Concat([x, x], 0, name: "c"), OnnxElementType.Float, 4, 3);
        b.AddOutput(b.Gather(x, 1, axis: 1, name: "col1"), OnnxElementType.Float, 2);
        b.AddOutput(b.Gather(x, b.AddInitializer("idx", [2L, 0], [2]), axis: 1, name: "cols20"), OnnxElementType.Float, 2, 2);
        b.AddOutput(b.Slice(x, [1], [3], [1], name: "s"), OnnxElementType.Float, 2, 2);
        b.AddOutput(b.Slice(x, [2], [-4], [1], [-2], name: "s_back"), OnnxElementType.Float, 2, 2);
        var u = b.Unsqueeze(x, [0], name: "u");
        b.AddOutput(b.Squeeze(u, [0], name: "sq"), OnnxElementType.Float, 2, 3);
        var row = b.Gather(x, 0, name: "row0");
        b.AddOutput(b.Expand(row, [2, 3], name: "e"), OnnxElementType.Float, 2, 3);
        b.AddOutput(b.Cast(b.Shape(u, name: "shape"), OnnxElementType.Float, name: "shape_f"), OnnxElementType.Float, 3);
        b.AddOutput(b.Cast(b.Shape(u, 1, 2, name: "dim1"), OnnxElementType.Float, name: "dim1_f"), OnnxElementType.Float, 1);

        var o = Run(b.ToBytes(), ("x", [0f, 1, 2, 3, 4, 5], [2, 3]));

        Assert.That(o["t"].Data, Is.EqualTo(new[] { 0f, 3, 1, 4, 2, 5 }));
        Assert.That(o["r"].Data, Is.EqualTo(new[] { 0f, 1, 2, 3, 4, 5 }));
        Assert.That(o["r"].Shape, Is.EqualTo(new long[] { 3, 2 }));
        Assert.That(o["c"].Data, Is.EqualTo(new[] { 0f, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5 }));
        Assert.That(o["col1"].Data, Is.EqualTo(new[] { 1f, 4 }));
        Assert.That(o["cols20"].Data, Is.EqualTo(new[] { 2f, 0, 5, 3 }));
        Assert.That(o["s"].Data, Is.EqualTo(new[] { 1f, 2, 4, 5 }));
        Assert.That(o["s_back"].Data, Is.EqualTo(new[] { 2f, 0, 5, 3 }));
        Assert.That(o["sq"].Shape, Is.EqualTo(new long[] { 2, 3 }));
        Assert.That(o["e"].Data, Is.EqualTo(new[] { 0f, 1, 2, 0, 1, 2 }));
        Assert.That(o["shape_f"].Data, Is.EqualTo(new[] { 1f, 2, 3 }));
        Assert.That(o["dim1_f"].Data, Is.EqualTo(new[] { 2f }));
    }

    [Test]
    public void ElementwiseAndReductionOps()
    {
        var b = new OnnxGraphBuilder();
        var x = b.AddInput("x", OnnxElementType.Float, 2, 2);                              // [[3,4],[0,-1]]
        var two = b.FloatScalar(2f);
        b.AddOutput(b.Sub(b.Mul(x, two), b.Div(x, two), name: "lin"), OnnxElementType.Float, 2, 2);
        b.AddOutput(b.ReduceL2(x, [1], name: "l2"), OnnxElementType.Float, 2, 1);
        b.AddOutput(b.ReduceSum(x, [0], keepDims: false, name: "sum"), OnnxElementType.Float, 2);
        b.AddOutput(b.Sqrt(b.Mul(x, x), name: "abs"), OnnxElementType.Float, 2, 2);
        b.AddOutput(b.Exp(x, name: "exp"), OnnxElementType.Float, 2, 2);
        b.AddOutput(b.Sigmoid(x, name: "sig"), OnnxElementType.Float, 2, 2);
        b.AddOutput(b.Erf(x, name: "erf"), OnnxElementType.Float, 2, 2);
        b.AddOutput(b.Max(x, b.FloatScalar(0f), name: "relu"), OnnxElementType.Float, 2, 2);
        b.AddOutput(b.Einsum("ij,kj->ik", [x, x], name: "gram"), OnnxElementType.Float, 2, 2);

        var o = Run(b.ToBytes(), ("x", [3f, 4, 0, -1], [2, 2]));

        Assert.That(o["lin"].Data, Is.EqualTo(new[] { 4.5f, 6, 0, -1.5f }).Within(1e-6));    // 2x − x/2 = 1.5x
        Assert.That(o["l2"].Data, Is.EqualTo(new[] { 5f, 1 }).Within(1e-6));
        Assert.That(o["sum"].Data, Is.EqualTo(new[] { 3f, 3 }).Within(1e-6));
        Assert.That(o["abs"].Data, Is.EqualTo(new[] { 3f, 4, 0, 1 }).Within(1e-6));
        Assert.That(o["exp"].Data, Is.EqualTo(new[] { MathF.Exp(3), MathF.Exp(4), 1, MathF.Exp(-1) }).Within(1e-4));
        Assert.That(o["sig"].Data, Is.EqualTo(new[] { 1 / (1 + MathF.Exp(-3)), 1 / (1 + MathF.Exp(-4)), 0.5f, 1 / (1 + MathF.E) }).Within(1e-6));
        // erf(3) = 0.9999779095, erf(4) = 0.9999999846, erf(0) = 0, erf(−1) = −0.8427007929
        Assert.That(o["erf"].Data, Is.EqualTo(new[] { 0.9999779095f, 0.9999999846f, 0, -0.8427007929f }).Within(1e-6));
        Assert.That(o["relu"].Data, Is.EqualTo(new[] { 3f, 4, 0, 0 }));
        // x·xᵀ = [[25, −4], [−4, 1]]
        Assert.That(o["gram"].Data, Is.EqualTo(new[] { 25f, -4, -4, 1 }).Within(1e-6));
    }

    [Test]
    public void ReduceL2_UsesAxesInputFromOpset18()
    {
        var b = new OnnxGraphBuilder(opsetVersion: 18);
        var x = b.AddInput("x", OnnxElementType.Float, 2, 2);
        b.AddOutput(b.ReduceL2(x, [1], keepDims: false, name: "l2"), OnnxElementType.Float, 2);

        var o = Run(b.ToBytes(), ("x", [3f, 4, 6, 8], [2, 2]));
        Assert.That(o["l2"].Data, Is.EqualTo(new[] { 5f, 10 }).Within(1e-6));
    }

    [Test]
    public void Float16Storage_RoundsWeightsToHalfPrecision_AndCastsBack()
    {
        float[] weights = [0.5f, 1.25f, 0.1f, -3.3f];
        var b = new OnnxGraphBuilder();
        var x = b.AddInput("x", OnnxElementType.Float, 4);
        var w16 = b.AddInitializer("w16", weights, [4], OnnxWeightStorage.Float16);
        using var t = tensor(weights.Select(v => (double)v).ToArray());
        var fromTensor = b.AddInitializer("wt16", t, OnnxWeightStorage.Float16);
        b.AddOutput(b.Mul(x, w16, name: "y"), OnnxElementType.Float, 4);
        b.AddOutput(b.Mul(x, fromTensor, name: "yt"), OnnxElementType.Float, 4);
        Assert.That(b.InitializerBytes, Is.EqualTo(2 * 4 * 2), "two float16 initializers of 4 elements");

        var o = Run(b.ToBytes(), ("x", [1f, 1, 1, 1], [4]));

        // 0.5 and 1.25 are exact in float16; 0.1 → 0.0999755859375, −3.3 → −3.30078125
        var expected = new[] { 0.5f, 1.25f, 0.0999755859375f, -3.30078125f };
        Assert.That(o["y"].Data, Is.EqualTo(expected));
        Assert.That(o["yt"].Data, Is.EqualTo(expected));
    }

    [Test]
    public void TensorInitializers_ConvertFloat64AndKeepInt64()
    {
        var b = new OnnxGraphBuilder();
        var x = b.AddInput("x", OnnxElementType.Float, 2, 3);
        using var w = tensor(new double[] { 1, 2, 3, 4, 5, 6 }).reshape(3, 2);
        using var shape = tensor(new long[] { 3, 2 });
        var y = b.MatMul(b.Reshape(x, b.AddInitializer("shape", shape), name: "r"), b.AddInitializer("w", w.t()), name: "y");
        b.AddOutput(y, OnnxElementType.Float, 3, 3);

        // x reshaped [[1,0],[0,1],[1,1]] times wᵀ = [[1,3,5],[2,4,6]]
        var o = Run(b.ToBytes(), ("x", [1f, 0, 0, 1, 1, 1], [2, 3]));
        Assert.That(o["y"].Data, Is.EqualTo(new[] { 1f, 3, 5, 2, 4, 6, 3, 7, 11 }));
        Assert.That(b.InitializerBytes, Is.EqualTo(2 * 8 + 6 * 4));
    }

    [Test]
    public void UniqueNames_AndRenamedOutputs()
    {
        var b = new OnnxGraphBuilder();
        var x = b.AddInput("x", OnnxElementType.Float, 1);
        var w1 = b.AddInitializer("w", [2f], [1]);
        var w2 = b.AddInitializer("w", [3f], [1]);
        var w3 = b.AddInitializer("w", [4f], [1]);
        Assert.That(new[] { w1, w2, w3 }, Is.EqualTo(new[] { "w", "w_1", "w_2" }));
        Assert.That(b.FloatScalar(1.5f), Is.EqualTo(b.FloatScalar(1.5f)), "scalar constants are shared");
        Assert.That(b.Int64Vector(1, 2), Is.Not.EqualTo(b.Int64Vector(2, 1)));

        var p = b.Mul(x, w2);
        var q = b.Mul(p, w3);
        Assert.That(p, Is.EqualTo("Mul"));
        Assert.That(q, Is.EqualTo("Mul_1"));
        b.AddOutput(q, "product", OnnxElementType.Float, 1);   // renamed through an Identity
        b.AddOutput(x, "echo", OnnxElementType.Float, 1);      // an input passed through
        Assert.That(b.OutputNames, Is.EqualTo(new[] { "product", "echo" }));
        Assert.That(b.InputNames, Is.EqualTo(new[] { "x" }));

        var o = Run(b.ToBytes(), ("x", [2f], [1]));
        Assert.That(o["product"].Data, Is.EqualTo(new[] { 24f }));
        Assert.That(o["echo"].Data, Is.EqualTo(new[] { 2f }));
    }

    [Test]
    public void BadInput_GetsClearErrors()
    {
        var b = new OnnxGraphBuilder("g");
        var x = b.AddInput("x", OnnxElementType.Float, 2);
        var e = Assert.Throws<ArgumentException>(() => b.Add(x, "missing"))!;
        Assert.That(e.Message, Does.Contain("'missing'").And.Contain("not defined"));
        e = Assert.Throws<ArgumentException>(() => b.AddInput("x", OnnxElementType.Float, 2))!;
        Assert.That(e.Message, Does.Contain("'x'").And.Contain("already exists"));
        e = Assert.Throws<ArgumentException>(() => b.AddInitializer("w", [1f, 2, 3], [2, 2]))!;
        Assert.That(e.Message, Does.Contain("'w'").And.Contain("4 elements but 3"));
        var y = b.Sigmoid(x, name: "y");
        b.AddOutput(y, OnnxElementType.Float, 2);
        e = Assert.Throws<ArgumentException>(() => b.AddOutput(x, "y", OnnxElementType.Float, 2))!;
        Assert.That(e.Message, Does.Contain("'y'"));
        e = Assert.Throws<ArgumentException>(() => b.AddNode("Custom", [x], 1, domain: "com.example"))!;
        Assert.That(e.Message, Does.Contain("com.example").And.Contain("ImportOpset"));

        var old = new OnnxGraphBuilder(opsetVersion: 13);
        var ox = old.AddInput("x", OnnxElementType.Float, 2);
        var ne = Assert.Throws<NotSupportedException>(() => old.LayerNormalization(ox, ox))!;
        Assert.That(ne.Message, Does.Contain("opset 17"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new OnnxGraphBuilder(opsetVersion: 11));

        var empty = new OnnxGraphBuilder("empty");
        empty.AddInput("x", OnnxElementType.Float, 1);
        Assert.That(Assert.Throws<InvalidOperationException>(() => empty.ToBytes())!.Message, Does.Contain("no outputs"));
    }

    [Test]
    public void ModelsOverTheProtobufLimit_AreRefusedWithAClearError()
    {
        using var dir = new TempDirectory();
        var b = new OnnxGraphBuilder("big") { MaxModelBytes = 1000 };
        var x = b.AddInput("x", OnnxElementType.Float, 200);
        var w = b.AddInitializer("small", new float[200], [200]);                      // 800 bytes: fine
        var e = Assert.Throws<OnnxModelTooLargeException>(() => b.AddInitializer("large", new float[100], [100]))!;
        Assert.That(e.Message, Does.Contain("'large'").And.Contain("2 GB").And.Contain("float16"));
        Assert.That(e.Bytes, Is.EqualTo(1200));
        Assert.That(e.Limit, Is.EqualTo(1000));
        // The same weights in float16 fit.
        b.AddOutput(b.Mul(x, b.AddInitializer("large", new float[100], [100], OnnxWeightStorage.Float16), name: "y"), OnnxElementType.Float, 100);

        // Protobuf framing counts too: a limit below the whole message refuses Save and writes nothing.
        b.MaxModelBytes = b.InitializerBytes + 10;
        var path = System.IO.Path.Combine(dir.Path, "big.onnx");
        Assert.Throws<OnnxModelTooLargeException>(() => b.Save(path));
        Assert.That(Directory.GetFiles(dir.Path), Is.Empty);
        Assert.That(OnnxGraphBuilder.ProtobufLimitBytes, Is.EqualTo(int.MaxValue));
    }

    [Test]
    public void Save_WritesAFileOnnxRuntimeLoads_WithMetadata()
    {
        using var dir = new TempDirectory();
        var b = new OnnxGraphBuilder("saved") { DocString = "a test graph" };
        var x = b.AddInput("x", OnnxElementType.Float, "batch", 2);
        b.AddOutput(b.Add(x, b.FloatScalar(1f), name: "y"), OnnxElementType.Float, "batch", 2);
        b.SetMetadata("purpose", "test");
        b.SetMetadata("purpose", "round trip");
        var path = dir.File("model.onnx");
        b.Save(path);
        b.Save(path);    // replaces atomically

        Assert.That(Directory.GetFiles(dir.Path).Select(System.IO.Path.GetFileName), Is.EqualTo(new[] { "model.onnx" }));
        using var session = new InferenceSession(path);
        Assert.That(session.ModelMetadata.CustomMetadataMap["purpose"], Is.EqualTo("round trip"));
        Assert.That(session.ModelMetadata.ProducerName, Is.EqualTo("Microsoft.ML.TaskVectors"));
        Assert.That(session.ModelMetadata.GraphName, Is.EqualTo("saved"));
        Assert.That(session.InputMetadata["x"].Dimensions, Is.EqualTo(new[] { -1, 2 }));
        Assert.That(session.InputMetadata["x"].SymbolicDimensions[0], Is.EqualTo("batch"));
        // The symbolic batch takes any size.
        Assert.That(Run(session, ("x", [1f, 2, 3, 4, 5, 6], [3, 2]))["y"].Data, Is.EqualTo(new[] { 2f, 3, 4, 5, 6, 7 }));
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(b.ToBytes()));
    }
}
