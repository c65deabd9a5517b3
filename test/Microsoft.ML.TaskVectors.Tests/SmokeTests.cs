namespace Microsoft.ML.TaskVectors.Tests; public class SmokeTests { [Test] public void One() => Assert.That(1 + 1, Is.EqualTo(2)); }
