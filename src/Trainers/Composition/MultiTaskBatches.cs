using Microsoft.ML.TaskVectors.TaskVectors;

namespace Microsoft.ML.TaskVectors.Trainers.Composition;

/// <summary>
/// Batches that mix the tasks evenly: each batch takes the same number of samples from every task, each
/// task's samples shuffled per epoch with the seed; smaller tasks start over when they run out, and an
/// epoch ends when the largest task has been seen once.
/// </summary>
internal static class MultiTaskBatches
{
    public readonly record struct Item(int Task, int Index);

    public static List<Item[]> ForEpoch(IReadOnlyList<int> taskSizes, int batchSize, long seed, int epoch)
    {
        int tasks = taskSizes.Count;
        if (batchSize < tasks)
            throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, $"The batch size must be at least the number of tasks ({tasks}) to mix them evenly.");
        int perTask = batchSize / tasks;
        var orders = taskSizes.Select((size, t) =>
        {
            var order = Enumerable.Range(0, size).ToArray();
            new Random((int)StableHash.Seed(seed, "epoch" + epoch, t)).Shuffle(order);
            return order;
        }).ToArray();
        int batches = (taskSizes.Max() + perTask - 1) / perTask;
        var result = new List<Item[]>(batches);
        for (int b = 0; b < batches; b++)
        {
            var batch = new Item[perTask * tasks];
            for (int t = 0; t < tasks; t++)
                for (int i = 0; i < perTask; i++)
                    batch[t * perTask + i] = new Item(t, orders[t][(b * perTask + i) % orders[t].Length]);
            result.Add(batch);
        }
        return result;
    }
}
