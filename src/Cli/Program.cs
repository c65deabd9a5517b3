namespace Microsoft.ML.TaskVectors.Cli; public static class Program { public static int Main(string[] args) => 0; }
