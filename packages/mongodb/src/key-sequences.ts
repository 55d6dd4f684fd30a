import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { ClientSession, Collection } from 'mongodb'
import type { MongoDbClient } from './client.js'
import { ContentionError } from './errors.js'
import { insertUnordered } from './inserts.js'
import type { OutboxDocument, OutboxKeyDocument } from './rows.js'

/** A key's numbering lock in `<prefix>locks`: `_id` = `key|<encoded key>`. */
interface KeyLockDocument {
  _id: string
  /** Wall-clock time the lock was taken, to recover a lock whose holder died. */
  at: Date
  /** Names this taking of the lock, so a recoverer deletes only the dead holder's lock. */
  token: string
}

/** After this long a key lock's holder is presumed dead (as the version locks of ferretdb.ts). */
export const KEY_LOCK_TTL_MS = 30_000
/** A waiting enqueuer gives up after this long: a dead holder's lock is freed well before. */
const KEY_LOCK_WAIT_MS = 2 * KEY_LOCK_TTL_MS

/** An unnumbered event the numbering read: what it needs to number it in enqueue order. */
type Unnumbered = Pick<OutboxDocument, '_id' | 'orderingKey' | 'seq' | 'rev'>

const keyLockId = (key: string): string => `key|${key}`

/**
 * Gives keyed events their `keySeq` from the per-key counters of `<prefix>outbox_keys`.
 *
 * Without a transaction (FerretDB v1, a standalone mongod, or an enqueue without `{ tx }`)
 * an event is inserted FIRST, without `keySeq`, and numbered after, under the key's lock:
 * read the key's unnumbered events in enqueue order, add their count to the counter, set
 * each one's number. A keyed event without `keySeq` holds its whole key in the claim (its
 * number is not known yet). That makes visibility prefix-closed: a number below `n` was
 * taken from the counter before `n`, and only for an event that was already inserted, so
 * when the event numbered `n` is visible to a claim, every event that will ever get a
 * lower number is visible too, numbered or holding its key unnumbered.
 *
 * The lock serializes the numbering of one key, so a batch's events of a key get
 * increasing numbers in input order however the enqueuer and a claimer interleave (the
 * counter's `$inc` alone would not: FerretDB v1's updates are not atomic, and two numberers
 * setting the events of one batch could each win some of them). Whoever holds the lock
 * numbers every unnumbered event of the key, its own or not; so a claimer that finds an
 * event whose enqueuer died before numbering it numbers it, and a key is never held for good.
 * Only one key's lock is ever awaited at a time, and nothing is awaited while holding one,
 * so two batches with overlapping keys cannot deadlock.
 *
 * Inside a MongoDB transaction the counter is incremented in the session instead and the
 * event inserted with its number: the counter document stays write-locked until the
 * transaction ends, so a second transaction of the key gets a WriteConflict (retried by
 * `withTransaction` / `store.transaction({ retries })`) and numbers follow commit order.
 */
export class KeySequences {
  readonly #client: MongoDbClient

  constructor(client: MongoDbClient) {
    this.#client = client
  }

  get #events(): Collection<OutboxDocument> {
    return this.#client.collection<OutboxDocument>('outbox')
  }

  get #counters(): Collection<OutboxKeyDocument> {
    return this.#client.collection<OutboxKeyDocument>('outboxKeys')
  }

  get #locks(): Collection<KeyLockDocument> {
    return this.#client.collection<KeyLockDocument>('locks')
  }

  /** Takes `count` numbers of `key` in the session's transaction; answers the first. */
  async reserveInSession(key: string, count: number, session: ClientSession): Promise<number> {
    const counter = await this.#counters.findOneAndUpdate(
      { _id: key },
      { $inc: { lastSeq: count } },
      { upsert: true, returnDocument: 'after', session },
    )
    if (!counter) throw new ContentionError(`the counter of an ordering key was not returned by its upsert`)
    return counter.lastSeq - count + 1
  }

  /**
   * Numbers every unnumbered event of `keys` (encoded), waiting for each key's lock.
   * Answers the numbers this call set, by stored event `_id`; an event another numberer
   * set is not in it.
   */
  async numberWaiting(keys: readonly string[]): Promise<Map<string, number>> {
    const numbered = new Map<string, number>()
    let waiting = [...new Set(keys)]
    const deadline = Date.now() + KEY_LOCK_WAIT_MS
    for (let attempt = 1; waiting.length > 0; attempt++) {
      if (attempt > 1) {
        if (Date.now() > deadline)
          throw new ContentionError(`the numbering lock of ${waiting.length} ordering key(s) stayed taken`)
        await sleep(Math.random() * Math.min(20, attempt))
      }
      const { granted, busy } = await this.#lock(waiting)
      if (granted.length > 0)
        for (const [id, keySeq] of await this.#numberLocked(granted)) numbered.set(id, keySeq)
      waiting = busy
    }
    return numbered
  }

  /** Numbers the keys whose lock is free now (a claimer's help); answers the keys it numbered. */
  async numberIfFree(keys: readonly string[]): Promise<string[]> {
    const { granted } = await this.#lock([...new Set(keys)])
    if (granted.length > 0) await this.#numberLocked(granted)
    return granted
  }

  /** Takes the free locks of `keys` (one unordered insert) and frees those a dead holder left. */
  async #lock(keys: readonly string[]): Promise<{ granted: string[]; busy: string[] }> {
    const tokens = new Map(keys.map((key) => [key, randomUUID()]))
    const at = new Date()
    const taken = await insertUnordered(
      this.#locks,
      keys.map((key) => ({ _id: keyLockId(key), at, token: tokens.get(key) ?? '' })),
    )
    const busy = keys.filter((_, index) => taken.has(index))
    if (busy.length > 0) {
      const stale = await this.#locks
        .find({ _id: { $in: busy.map(keyLockId) }, at: { $lt: new Date(Date.now() - KEY_LOCK_TTL_MS) } })
        .toArray()
      // The token names the dead holder's lock: a recoverer that lost the race to another
      // matches nothing, and never deletes the lock the winner took after it.
      for (const lock of stale) await this.#locks.deleteOne({ _id: lock._id, token: lock.token })
    }
    return { granted: keys.filter((_, index) => !taken.has(index)), busy }
  }

  /** Numbers the unnumbered events of keys whose lock this call holds, then releases the locks. */
  async #numberLocked(keys: readonly string[]): Promise<Map<string, number>> {
    try {
      const unnumbered = (await this.#events
        .find(
          { orderingKey: { $in: [...keys] }, keySeq: { $exists: false } },
          { projection: { _id: 1, orderingKey: 1, seq: 1, rev: 1 } },
        )
        .toArray()) as Unnumbered[]
      const byKey = new Map<string, Unnumbered[]>()
      for (const doc of unnumbered) {
        if (doc.orderingKey === undefined) continue
        const group = byKey.get(doc.orderingKey)
        if (group) group.push(doc)
        else byKey.set(doc.orderingKey, [doc])
      }
      const wanted = new Map<string, { doc: Unnumbered; keySeq: number }>()
      await Promise.all(
        [...byKey].map(async ([key, docs]) => {
          // Enqueue order: a batch's events of one key were given increasing `seq` in input order.
          docs.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0))
          // Only lock holders write a counter outside a transaction, so this $inc, though
          // FerretDB applies it in two steps, has no concurrent writer to lose against.
          const counter = await this.#counters.findOneAndUpdate(
            { _id: key },
            { $inc: { lastSeq: docs.length } },
            { upsert: true, returnDocument: 'after' },
          )
          if (!counter)
            throw new ContentionError('the counter of an ordering key was not returned by its upsert')
          const first = counter.lastSeq - docs.length + 1
          for (const [index, doc] of docs.entries()) wanted.set(doc._id, { doc, keySeq: first + index })
        }),
      )
      return await this.#setNumbers(wanted)
    } finally {
      await this.#locks.deleteMany({ _id: { $in: keys.map(keyLockId) } })
    }
  }

  /**
   * Sets each event's number with the store's compare-and-set, keeping the number when a
   * write lost to an unfenced change of the event (markAsPublishing, a mark without
   * workerId): it is read again and numbered again while it has no number.
   */
  async #setNumbers(
    wanted: ReadonlyMap<string, { doc: Unnumbered; keySeq: number }>,
  ): Promise<Map<string, number>> {
    const numbered = new Map<string, number>()
    let pending = [...wanted.values()]
    for (let attempt = 1; pending.length > 0; attempt++) {
      if (attempt > 20)
        throw new ContentionError(`${pending.length} keyed event(s) kept changing while numbered`)
      const applied = await this.#client.compareAndSet(
        'outbox',
        pending.map(({ doc, keySeq }) => ({ id: doc._id, rev: doc.rev, set: { keySeq } })),
      )
      for (const { doc, keySeq } of pending) if (applied.has(doc._id)) numbered.set(doc._id, keySeq)
      const lost = pending.filter(({ doc }) => !applied.has(doc._id))
      if (lost.length === 0) break
      const fresh = await this.#events
        .find({ _id: { $in: lost.map(({ doc }) => doc._id) }, keySeq: { $exists: false } })
        .project<Unnumbered>({ _id: 1, orderingKey: 1, seq: 1, rev: 1 })
        .toArray()
      const byId = new Map(fresh.map((doc) => [doc._id, doc]))
      pending = lost.flatMap(({ doc, keySeq }) => {
        const now = byId.get(doc._id)
        return now ? [{ doc: now, keySeq }] : []
      })
    }
    return numbered
  }
}
