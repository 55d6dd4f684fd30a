import { repeatInBatches } from '@txbox/core'
import { storage, unexpectedReply } from './errors.js'
import { BATCH_SIZE } from './redis-options.js'

/**
 * Calls a bounded script (one that handles at most `BATCH_SIZE` entries and answers how many
 * it handled) until it handles fewer: cleanup and resetStale never run one long script that
 * would block every other client of the server.
 */
export const scriptBatches = (
  operation: string,
  runBatch: (batchSize: number) => Promise<unknown>,
): Promise<number> =>
  storage(operation, () =>
    repeatInBatches(BATCH_SIZE, async (batchSize) => {
      const reply = await runBatch(batchSize)
      if (typeof reply !== 'number') throw unexpectedReply(operation, reply)
      return reply
    }),
  )
