using System.CommandLine;
using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Images;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Runtime;
using static TorchSharp.torch;

namespace Microsoft.ML.TaskVectors.Cli.Commands;

// Inside Microsoft.ML.*, the namespace Microsoft.ML.Command would hide System.CommandLine.Command.
using Command = System.CommandLine.Command;

/// <summary><c>taskvectors embed</c>: unnormalised projected CLIP image embeddings as CSV rows.</summary>
internal static class EmbedCommand
{
    private static readonly string[] ImageExtensions = [".png", ".jpg", ".jpeg"];

    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "CLIP model folder (Hugging Face or open_clip).", Required = true };
        var images = new Option<string?>("--images") { Description = "Folder of PNG/JPEG images (searched recursively, sorted by path)." };
        var image = new Option<string[]>("--image") { Description = "Image files, in the order given.", AllowMultipleArgumentsPerToken = true };
        var onnx = new Option<string?>("--onnx") { Description = "Compute with ONNX Runtime on this exported model instead of TorchSharp." };
        var output = new Option<string?>("--out") { Description = "CSV file to write (standard output when omitted)." };
        var batch = new Option<int>("--batch") { Description = "Images per forward pass.", DefaultValueFactory = _ => 32 };
        var device = new Option<string>("--device") { Description = "cpu, cuda or auto (TorchSharp only).", DefaultValueFactory = _ => ComputeDevice.Auto };
        var command = new Command("embed", "Write one CSV row 'path,e1,...,eD' per image: its unnormalised projected CLIP embedding.")
        {
            model, images, image, onnx, output, batch, device,
        };
        command.SetAction((result, cancellationToken) =>
        {
            var files = ImageFiles(result.GetValue(images), result.GetValue(image) ?? []);
            if (result.GetValue(batch) < 1) throw new ArgumentException("--batch must be at least 1.");
            Run(result.GetValue(model)!, files, result.GetValue(onnx), result.GetValue(output), result.GetValue(batch), result.GetValue(device)!, cancellationToken);
            return Task.FromResult(0);
        });
        return command;
    }

    /// <summary>The images to embed: a folder's PNG/JPEG files sorted by path, then the files given one by one.</summary>
    internal static IReadOnlyList<string> ImageFiles(string? folder, IReadOnlyList<string> files)
    {
        var list = new List<string>();
        if (folder is not null)
        {
            if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"--images: no such folder '{folder}'.");
            var found = Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories)
                .Where(f => ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
                .Order(StringComparer.Ordinal)
                .ToList();
            if (found.Count == 0) throw new ArgumentException($"--images: '{folder}' holds no .png, .jpg or .jpeg file.");
            list.AddRange(found);
        }
        foreach (var f in files)
        {
            if (!File.Exists(f)) throw new FileNotFoundException($"--image: no such file '{f}'.", f);
            list.Add(f);
        }
        if (list.Count == 0) throw new ArgumentException("Give images with --images FOLDER or --image FILE ....");
        return list;
    }

    private static void Run(string modelFolder, IReadOnlyList<string> files, string? onnxPath, string? outputPath, int batchSize, string device, CancellationToken cancellationToken)
    {
        var config = ClipConfig.FromFolder(modelFolder);
        var preprocessor = ClipImagePreprocessor.For(config.Vision);
        using var embedder = onnxPath is null ? (IEmbedder)new TorchEmbedder(modelFolder, ComputeDevice.Resolve(device)) : new OnnxEmbedder(onnxPath);
        var rows = new List<string>(files.Count);
        CliProgress.Run<object?>(progress =>
        {
            for (int start = 0; start < files.Count; start += batchSize)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var chunk = files.Skip(start).Take(batchSize).ToArray();
                var pixels = preprocessor.ProcessBatch(chunk.Select(RgbImage.Load).ToArray());
                var embeddings = embedder.Embed(pixels, chunk.Length, preprocessor.ImageSize);
                int d = embeddings.Length / chunk.Length;
                for (int i = 0; i < chunk.Length; i++)
                    rows.Add(Csv(chunk[i]) + "," + string.Join(",", embeddings.AsSpan(i * d, d).ToArray().Select(v => v.ToString("R", CultureInfo.InvariantCulture))));
                progress.Report(("embedding", (double)(start + chunk.Length) / files.Count));
            }
            return null;
        });
        var text = string.Join("\n", rows) + "\n";
        if (outputPath is null) Console.Out.Write(text);
        else AtomicFile.WriteAllText(outputPath, text);
    }

    private static string Csv(string field) =>
        field.IndexOfAny([',', '"', '\n', '\r']) < 0 ? field : "\"" + field.Replace("\"", "\"\"") + "\"";

    private interface IEmbedder : IDisposable
    {
        float[] Embed(float[] pixels, int count, int size);
    }

    private sealed class TorchEmbedder(string folder, Device device) : IEmbedder
    {
        private readonly ClipModel _model = ClipModel.Load(folder, device, loadText: false);

        public float[] Embed(float[] pixels, int count, int size)
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var input = tensor(pixels, [count, 3, size, size]).to(_model.Device);
            return _model.EncodeImage(input).cpu().data<float>().ToArray();
        }

        public void Dispose() => _model.Dispose();
    }

    private sealed class OnnxEmbedder : IEmbedder
    {
        private readonly InferenceSession _session;

        public OnnxEmbedder(string path)
        {
            if (!File.Exists(path)) throw new FileNotFoundException($"--onnx: no such file '{path}'.", path);
            _session = new InferenceSession(path);
            if (!_session.InputMetadata.ContainsKey("pixel_values") || !_session.OutputMetadata.ContainsKey("image_embeds"))
                throw new InvalidDataException($"{path}: an ONNX model with input 'pixel_values' and output 'image_embeds' was expected (see taskvectors export-onnx); it has inputs {string.Join(", ", _session.InputMetadata.Keys)} and outputs {string.Join(", ", _session.OutputMetadata.Keys)}.");
        }

        public float[] Embed(float[] pixels, int count, int size)
        {
            var input = new DenseTensor<float>(pixels, [count, 3, size, size]);
            using var results = _session.Run([NamedOnnxValue.CreateFromTensor("pixel_values", input)], ["image_embeds"]);
            return results.First().AsEnumerable<float>().ToArray();
        }

        public void Dispose() => _session.Dispose();
    }
}
