using System.CommandLine;
using Microsoft.ML.TaskVectors.Checkpoints;
using Microsoft.ML.TaskVectors.Models;
using Microsoft.ML.TaskVectors.Onnx;

namespace Microsoft.ML.TaskVectors.Cli.Commands;

// Inside Microsoft.ML.*, the namespace Microsoft.ML.Command would hide System.CommandLine.Command.
using Command = System.CommandLine.Command;

/// <summary><c>taskvectors export-onnx</c>: the CLIP vision encoder (plain or merged, optionally with a head) as ONNX.</summary>
internal static class ExportOnnxCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "CLIP model folder (Hugging Face or open_clip).", Required = true };
        var weights = new Option<string?>("--weights") { Description = "Merged checkpoint whose vision tensors replace the model's (e.g. from taskvectors merge)." };
        var head = new Option<string?>("--head") { Description = "Append a head: linear:HEAD.safetensors or zeroshot:CLASSES.txt (one class name per line)." };
        var templates = new Option<string?>("--templates") { Description = "Zero-shot prompt templates: a known set (e.g. EuroSAT) or a file with one template per line." };
        var float16 = new Option<bool>("--float16") { Description = "Store weight matrices as float16 (halves the file; needed past ONNX's 2 GB limit)." };
        var output = new Option<string>("--out") { Description = "The .onnx file to write.", Required = true };
        var command = new Command("export-onnx", "Export the vision encoder to ONNX: input pixel_values [batch,3,H,W], output image_embeds (and logits with a head).")
        {
            model, weights, head, templates, float16, output,
        };
        command.SetAction((result, cancellationToken) =>
        {
            var folder = result.GetValue(model)!;
            var config = ClipConfig.FromFolder(folder);
            using var checkpoint = ClipCheckpoint.Open(folder);
            using var merged = result.GetValue(weights) is { } w ? ClipCheckpoint.Open(w) : null;
            using var classifier = result.GetValue(head) is { } spec ? HeadSpecification.Load(spec, folder, result.GetValue(templates), cancellationToken) : null;
            var options = new ClipVisionOnnxExportOptions
            {
                WeightOverride = merged,
                Head = classifier?.ToOnnxHead(),
                WeightStorage = result.GetValue(float16) ? OnnxWeightStorage.Float16 : OnnxWeightStorage.Float32,
            };
            var path = result.GetValue(output)!;
            CliProgress.Run<object?>(progress =>
            {
                ClipVisionOnnxExporter.Export(checkpoint, config, path, options, progress.Phase("exporting"), cancellationToken);
                return null;
            });
            Console.Error.WriteLine($"wrote {path}");
            return Task.FromResult(0);
        });
        return command;
    }
}
