using System.Runtime.InteropServices;
using Microsoft.ML.TaskVectors.Runtime;

namespace Microsoft.ML.TaskVectors.Tests.Runtime;

public class OpenMpWaitPolicyTests
{
    [DllImport("libc")]
    private static extern IntPtr getenv(string name);

    [Test]
    public void TheSettingReachesTheNativeEnvironmentUnlessTheUserChoseOne()
    {
        Assume.That(OperatingSystem.IsLinux(), "libgomp's setting is Linux only");
        string described = OpenMpWaitPolicy.Describe();
        if (OpenMpWaitPolicy.AppliedByLibrary)
        {
            // What libgomp reads is libc's environment, not .NET's copy.
            Assert.That(Marshal.PtrToStringAnsi(getenv(OpenMpWaitPolicy.SpinCountVariable)), Is.EqualTo("0"));
            Assert.That(described, Is.EqualTo("GOMP_SPINCOUNT=0 (set by Microsoft.ML.TaskVectors)"));
        }
        else
        {
            Assert.That(Environment.GetEnvironmentVariable("GOMP_SPINCOUNT") ?? Environment.GetEnvironmentVariable("OMP_WAIT_POLICY"), Is.Not.Null,
                "the library leaves the setting alone only when the user set one");
            Assert.That(described, Does.Not.Contain("set by"));
        }
    }
}
