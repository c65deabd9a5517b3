using System.Runtime.ExceptionServices;
using TorchSharp;

namespace Microsoft.ML.TaskVectors.Merging;

/// <summary>
/// Runs independent libtorch computations on separate cores. LAPACK routines such as the symmetric
/// eigendecomposition barely use libtorch's intra-op threads, so N of them side by side (one
/// intra-op thread each) finish much sooner than one after another.
/// </summary>
internal static class ParallelTorch
{
    private static readonly object Gate = new();

    /// <summary>
    /// Calls <paramref name="body"/>(i) for i in [0, <paramref name="count"/>), on up to
    /// get_num_threads() threads at once with libtorch's intra-op thread count set to 1 meanwhile
    /// (restored afterwards); one after another on the calling thread when there is one thread or
    /// one item. The body must create and dispose its own tensors (its own dispose scope) and write
    /// results into tensors made beforehand.
    /// </summary>
    public static void For(int count, Action<int> body)
    {
        int intraOp = torch.get_num_threads();
        int threads = Math.Min(intraOp, Environment.ProcessorCount);
        if (count <= 1 || threads <= 1 || !Monitor.TryEnter(Gate))
        {
            for (int i = 0; i < count; i++)
            {
                body(i);
            }

            return;
        }

        try
        {
            torch.set_num_threads(1);
            try
            {
                Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = threads }, body);
            }
            catch (AggregateException e) when (e.InnerExceptions.Count == 1)
            {
                // Surface a body's exception as it would be thrown sequentially.
                ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
                throw;
            }
            finally
            {
                torch.set_num_threads(intraOp);
            }
        }
        finally
        {
            Monitor.Exit(Gate);
        }
    }
}
