import type { TransactWriteItem } from '@aws-sdk/client-dynamodb'
import type { CancellationReason } from './client.js'
import { counterOf, type KeyCounter } from './key-chain.js'
import type { Item } from './rows.js'

/**
 * The ordering keys a `{ tx }` collector advances: per key, the counter update (conditioned on
 * the value read) and the puts of the key's events in the collector. A later enqueue of the
 * key into the same collector continues that chain (one counter update per transaction);
 * `store.transaction`'s commit re-chains them when another enqueue of the key committed
 * first (see `rechainLostCounters`).
 */
export interface CollectedKey {
  /** The counter update in the collector (its `Update` is replaced when the chain is rebuilt). */
  readonly counterAction: TransactWriteItem
  /** Appends events of the key (new items, in order): their puts join the collector, the chain is rebuilt. */
  readonly add: (group: readonly Item[]) => void
  /** Rebuilds every put of the key and the counter update after `read`, in place. */
  readonly rechain: (read: KeyCounter) => void
}

const collected = new WeakMap<TransactWriteItem[], Map<string, CollectedKey>>()

/** The keys `tx` advances, forgetting those whose counter update is no longer in it (an array sent and filled again). */
export const collectedKeys = (tx: TransactWriteItem[]): Map<string, CollectedKey> => {
  const keys = collected.get(tx) ?? new Map<string, CollectedKey>()
  for (const [key, entry] of keys) if (!tx.includes(entry.counterAction)) keys.delete(key)
  collected.set(tx, keys)
  return keys
}

/**
 * After `store.transaction`'s commit of `tx` was cancelled with `reasons`: when the only
 * failed conditions are counters of keys this collector advanced (another enqueue of the key
 * committed first, its reason returns the counter), re-chains those keys' events after the
 * counters as they are now and answers true: the same transaction can be sent again, and
 * nothing of the caller's own actions changed. False otherwise.
 */
export const rechainLostCounters = (
  tx: TransactWriteItem[],
  reasons: readonly CancellationReason[],
): boolean => {
  const keys = collected.get(tx)
  if (!keys) return false
  const lost: { entry: CollectedKey; reason: CancellationReason }[] = []
  for (const [index, reason] of reasons.entries()) {
    if (reason.code === 'None') continue
    const action = tx[index]
    const entry = [...keys.values()].find((candidate) => candidate.counterAction === action)
    if (reason.code !== 'ConditionalCheckFailed' || entry === undefined || reason.item === undefined)
      return false
    lost.push({ entry, reason })
  }
  if (lost.length === 0) return false
  for (const { entry, reason } of lost) entry.rechain(counterOf(reason.item))
  return true
}
