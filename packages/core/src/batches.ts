/**
 * Runs `runBatch` again and again until it handles fewer than `batchSize` rows, and returns
 * the total. Adapters use it for `cleanup` and similar sweeps, so that no single statement
 * or script touches more than one batch and none holds a long lock.
 */
export const repeatInBatches = async (
  batchSize: number,
  runBatch: (batchSize: number) => number | Promise<number>,
): Promise<number> => {
  let total = 0
  for (;;) {
    const handled = await runBatch(batchSize)
    total += handled
    if (handled < batchSize) return total
  }
}
