import type { Collection } from 'mongodb'
import type { MongoDbClient } from './client.js'
import { ContentionError } from './errors.js'
import type { KeySequences } from './key-sequences.js'
import type { OutboxDocument } from './rows.js'

/** A keyed dead letter `requeueFailed` just moved back to `pending`, its `keySeq` unset. */
export interface Redriven {
  /** The stored `_id`. */
  readonly id: string
  /** The encoded ordering key. */
  readonly key: string
  /** The number it had before the redrive (kept in the event as `redrivenFrom`). */
  readonly keySeq: number
}

/** Pending events read per step of the fence walk (usually the first is the last). */
const FENCE_PAGE = 32
/** Rounds of a restore whose event kept changing (an unfenced mark, a rival numberer). */
const RESTORE_ROUNDS = 20

type Placed = Pick<OutboxDocument, '_id' | 'rev' | 'keySeq' | 'redrivenFrom' | 'orderingKey'>

/**
 * Gives redriven keyed dead letters their place in their key again (cold path: an operator
 * action; nothing here runs for a claim).
 *
 * `requeueFailed` moves a keyed dead letter to `pending` WITHOUT its `keySeq` (the old one
 * kept in `redrivenFrom`) in the same compare-and-set. A keyed event without `keySeq` holds
 * its whole key in every claim that reads after that write, so from then on no claim that
 * reads the key can take any of its events. Then, per redriven event:
 * - if an event of its key with a higher `keySeq` is `publishing` (a claim with
 *   `keyedDeadLetters: 'skip'` went past it), it is numbered again at the END of its key
 *   (the fenced numbering of key-sequences.ts: a number above every number given), so it
 *   never sits below an event in flight;
 * - otherwise it gets its old number back, and is the head again (what `'block'` promises).
 *
 * The race: a claim that read the key BEFORE the redrive (the dead letter `failed`, so
 * invisible to `'skip'`) may compare-and-set its head after our check saw nothing
 * publishing; restored below it, the dead letter would be claimed beside it. So before the
 * check, every pending event such a claim may have chosen gets a new version (its
 * compare-and-set then matches nothing): walking the key's pending events above the dead
 * letter in `keySeq` order, up to and including the first one never redriven. A stale
 * claim's head h had, at its read, only `sent` or `failed` events between the dead letter
 * and h; `sent` is final and a `failed` one is pending again only through a redrive (which
 * marks it `redrivenFrom`), a renumbered one sits above h, so the walk reaches h. A stale
 * claim that won before the fence shows up as `publishing` in the check. (On MongoDB one
 * query is not a snapshot: a claim whose single read spans the redrive's first write and its
 * fence could miss the dead letter yet read the head's new version; the claim then treats a
 * `publishing` event of a key as its only claimable one, whatever its `keySeq`.)
 *
 * If the requeuer dies before placing, claims number the event at the end of its key as an
 * orphan ({@link waitingSince}): always safe, only the order of that event is given up.
 */
export class KeyedRedrives {
  readonly #client: MongoDbClient
  readonly #keys: KeySequences

  constructor(client: MongoDbClient, keys: KeySequences) {
    this.#client = client
    this.#keys = keys
  }

  get #events(): Collection<OutboxDocument> {
    return this.#client.collection<OutboxDocument>('outbox')
  }

  async place(redriven: readonly Redriven[]): Promise<void> {
    if (redriven.length === 0) return
    const lowest = new Map<string, number>()
    for (const event of redriven)
      lowest.set(event.key, Math.min(lowest.get(event.key) ?? event.keySeq, event.keySeq))
    await this.#fence(lowest)
    const inFlight = new Map<string, number>()
    const publishing = await this.#events
      .find(
        { status: 'publishing', orderingKey: { $in: [...lowest.keys()] } },
        { projection: { orderingKey: 1, keySeq: 1 } },
      )
      .toArray()
    for (const doc of publishing)
      if (doc.orderingKey !== undefined && doc.keySeq !== undefined)
        inFlight.set(doc.orderingKey, Math.max(inFlight.get(doc.orderingKey) ?? doc.keySeq, doc.keySeq))
    const behind = (event: Redriven) => (inFlight.get(event.key) ?? Number.NEGATIVE_INFINITY) > event.keySeq
    await this.#restore(redriven.filter((event) => !behind(event)))
    const renumber = [...new Set(redriven.filter(behind).map((event) => event.key))].sort()
    if (renumber.length > 0) await this.#keys.numberWaiting(renumber)
  }

  /** New versions for the pending events a claim that read before the redrive may take (see above). */
  async #fence(lowest: ReadonlyMap<string, number>): Promise<void> {
    for (const [key, keySeq] of [...lowest].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      let after = keySeq
      for (;;) {
        const page = await this.#events
          .find(
            { status: 'pending', orderingKey: key, keySeq: { $gt: after } },
            { projection: { _id: 1, rev: 1, keySeq: 1, redrivenFrom: 1 } },
          )
          .sort({ keySeq: 1 })
          .limit(FENCE_PAGE)
          .toArray()
        const end = page.findIndex((doc) => doc.redrivenFrom === undefined)
        const fenced = end === -1 ? page : page.slice(0, end + 1)
        // A lost write: the event changed since it was read, which fences it as well.
        await this.#client.compareAndSet(
          'outbox',
          fenced.map((doc) => ({ id: doc._id, rev: doc.rev, set: {} })),
        )
        const last = page.at(-1)
        if (end !== -1 || page.length < FENCE_PAGE || last?.keySeq === undefined) break
        after = last.keySeq
      }
    }
  }

  /** Gives each event its old number back, unless a numberer placed it first (at the end). */
  async #restore(events: readonly Redriven[]): Promise<void> {
    let pending = events
    for (let round = 1; pending.length > 0; round++) {
      if (round > RESTORE_ROUNDS)
        throw new ContentionError(`${pending.length} redriven event(s) kept changing while placed`)
      const docs = (await this.#events
        .find({ _id: { $in: pending.map((event) => event.id) } })
        .project<Placed>({ _id: 1, rev: 1, keySeq: 1, redrivenFrom: 1 })
        .toArray()) as Placed[]
      const byId = new Map(docs.map((doc) => [doc._id, doc]))
      // Gone (cleanup), numbered already, or redriven again by someone else: not ours to place.
      const writes = pending.flatMap((event) => {
        const doc = byId.get(event.id)
        return doc && doc.keySeq === undefined && doc.redrivenFrom === event.keySeq
          ? [{ id: doc._id, rev: doc.rev, set: { keySeq: event.keySeq } }]
          : []
      })
      const applied = await this.#client.compareAndSet('outbox', writes)
      const lost = new Set(writes.filter((write) => !applied.has(write.id)).map((write) => write.id))
      pending = pending.filter((event) => lost.has(event.id))
    }
  }
}

/**
 * Since when an unnumbered event has been waiting for its number: its enqueue, or for a
 * redriven dead letter its redrive (`availableAt` is set to the redrive's time), so claims
 * leave its placement to the requeuer for as long as they leave a new event to its enqueuer.
 */
export const waitingSince = (
  doc: Pick<OutboxDocument, 'enqueuedAt' | 'availableAt' | 'redrivenFrom'>,
): Date => (doc.redrivenFrom === undefined ? doc.enqueuedAt : doc.availableAt)
