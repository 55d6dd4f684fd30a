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

/**
 * `items` in order, cut into chunks of at most `maxItems` items and `maxBytes` bytes (by
 * `sizeOf`); an item larger than `maxBytes` alone is a chunk of its own. Adapters use it to
 * fit a batch into what one statement or request carries.
 */
export const boundedChunks = <T>(
  items: readonly T[],
  limits: { maxItems: number; maxBytes: number; sizeOf: (item: T) => number },
): T[][] => {
  const chunks: T[][] = []
  let chunk: T[] = []
  let bytes = 0
  for (const item of items) {
    const size = limits.sizeOf(item)
    if (chunk.length > 0 && (chunk.length >= limits.maxItems || bytes + size > limits.maxBytes)) {
      chunks.push(chunk)
      chunk = []
      bytes = 0
    }
    chunk.push(item)
    bytes += size
  }
  if (chunk.length > 0) chunks.push(chunk)
  return chunks
}
