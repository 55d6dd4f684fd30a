import { EventNotFoundError, LeaseLostError, StorageError } from '../errors.js'
import type { FencedOutcome } from './primitives.js'

/**
 * The one mapping of a fenced write's outcome, outbox and inbox alike: applied returns; not
 * stored is `EventNotFoundError`; a refused fence is `LeaseLostError`; "lost" for a write that
 * carried no fence is the store contradicting itself, a `StorageError`.
 */
export const assertFenceApplied = (
  outcome: FencedOutcome,
  target: { adapter: string; side: 'outbox' | 'inbox'; operation: string },
  eventId: string,
  workerId: string | undefined,
): void => {
  if (outcome === 'applied') return
  if (outcome === 'missing') throw new EventNotFoundError(target.adapter, eventId, target.side)
  if (workerId !== undefined) throw new LeaseLostError(target.adapter, eventId, workerId)
  throw new StorageError(
    target.adapter,
    `${target.side}.${target.operation}`,
    undefined,
    `the store answered "lease lost" for an unfenced write of ${JSON.stringify(eventId)}`,
  )
}
