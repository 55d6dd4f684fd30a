import { setTimeout as sleep } from 'node:timers/promises'
import type { ClientSession, Collection } from 'mongodb'
import type { MongoDbClient } from './client.js'
import { ContentionError } from './errors.js'
import { insertUnordered } from './inserts.js'
import type { OutboxDocument, OutboxKeyDocument } from './rows.js'

/**
 * A numbering decision in `<prefix>outbox_key_decisions`: `_id` = `seq|<encoded key>|<from>`. It gives the
 * key's numbers `from + 1 ..` to `events`, in that order. At most one decision exists per
 * `(key, from)`: the unique `_id` is the fence of the numbering.
 */
export interface KeyDecisionDocument {
  _id: string
  /** When the decision was made (the store's clock): for people reading the collection. */
  at: Date
  key: string
  /** The counter's `lastSeq` the decision was made on. */
  from: number
  /** Stored event `_id`s, in the order they are numbered. */
  events: string[]
}

/** A waiting enqueuer gives up after this many rounds lost to other numberers of its keys. */
const NUMBER_ROUNDS = 200

/** An unnumbered event the numbering read: what it needs to number it in enqueue order. */
type Unnumbered = Pick<OutboxDocument, '_id' | 'orderingKey' | 'seq' | 'rev' | 'redrivenFrom'>

/** The version of an event a numbering write is decided on. */
type Version = Pick<OutboxDocument, 'rev' | 'redrivenFrom'>

export const decisionId = (key: string, from: number): string => `seq|${key}|${from}`

const bySeq = (a: Unnumbered, b: Unnumbered): number => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0)

/**
 * Gives keyed events their `keySeq` from the per-key counters of `<prefix>outbox_keys`.
 *
 * Without a transaction (FerretDB v1, a standalone mongod, or an enqueue without `{ tx }`)
 * an event is inserted FIRST, without `keySeq`, and numbered after. A keyed event without
 * `keySeq` holds its whole key in the claim (its number is not known yet), which makes
 * visibility prefix-closed: a number is only ever decided for an event already inserted.
 *
 * Numbering a key is three idempotent steps, each batched over every key of a call:
 * 1. DECIDE: read the counter (`lastSeq` L) and the key's unnumbered events (enqueue order),
 *    then insert the decision `seq|<key>|L` listing them. The unique `_id` lets exactly one
 *    decision through per counter value: that is the fence. A numberer that paused for any
 *    time (GC, network) between its read and its insert finds the decision another one made
 *    on L (duplicate key), and neither writes a number of its own nor loses an event.
 * 2. APPLY: set each listed event's `keySeq` (compare-and-set, only where still unset).
 * 3. ADVANCE: move the counter from L to L + count (filter `lastSeq: L`).
 * Whoever finds a decision on L (a rival, or the next numberer after a crash) completes it
 * (apply, then advance) before deciding again, so a decision is never half-done for good,
 * and every writer of a step writes the same values: no step can conflict with another
 * writer of it, which is why no lock with a takeover is needed. Applying before advancing
 * keeps a decision's events out of the next one: when a numberer reads `lastSeq` L, every
 * decision below L is applied, so an unnumbered event it reads is in no decision yet.
 *
 * Decision documents are kept: the fence needs the decision on L as long as a numberer
 * that read L may still try to insert it. They are small (a key, two numbers, the ids).
 *
 * Inside a MongoDB transaction the counter is incremented in the session and the event
 * inserted with its number; the same decision document is upserted in the session, so a
 * decision of a `{ tx }`-less numberer on the same counter value makes the transaction
 * fail with a retryable conflict instead of handing the same numbers out twice.
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

  get #decisions(): Collection<KeyDecisionDocument> {
    return this.#client.collection<KeyDecisionDocument>('outboxKeyDecisions')
  }

  /** Takes numbers of `key` for `ids` (in order) in the session's transaction; answers the first. */
  async reserveInSession(key: string, ids: readonly string[], session: ClientSession): Promise<number> {
    const count = ids.length
    const counter = await this.#counters.findOneAndUpdate(
      { _id: key },
      { $inc: { lastSeq: count } },
      { upsert: true, returnDocument: 'after', session },
    )
    if (!counter) throw new ContentionError(`the counter of an ordering key was not returned by its upsert`)
    const from = counter.lastSeq - count
    const decision = await this.#decisions.updateOne(
      { _id: decisionId(key, from) },
      { $setOnInsert: { at: this.#client.clock(), key, from, events: [...ids] } },
      { upsert: true, session },
    )
    if (decision.upsertedCount !== 1)
      throw new ContentionError(
        'an enqueue without a transaction numbered the same ordering key at the same moment; retry the transaction',
      )
    return from + 1
  }

  /**
   * Numbers every unnumbered event of `keys` (encoded), completing other numberers'
   * decisions on the way. Answers the numbers of every event it applied or found decided,
   * by stored event `_id`.
   */
  async numberWaiting(keys: readonly string[]): Promise<Map<string, number>> {
    const numbered = new Map<string, number>()
    let waiting = [...new Set(keys)]
    for (let attempt = 1; waiting.length > 0; attempt++) {
      if (attempt > NUMBER_ROUNDS)
        throw new ContentionError(`${waiting.length} ordering key(s) kept being numbered by others`)
      if (attempt > 2) await sleep(Math.random() * Math.min(20, attempt))
      waiting = await this.#round(waiting, numbered)
    }
    return numbered
  }

  /** One round for a claimer that found orphans: answers the keys it numbered or completed. */
  async numberOnce(keys: readonly string[]): Promise<string[]> {
    const unique = [...new Set(keys)]
    const retry = new Set(await this.#round(unique, new Map()))
    return unique.filter((key) => !retry.has(key))
  }

  /** Decides, applies and advances once per key; answers the keys another numberer's decision beat. */
  async #round(keys: readonly string[], numbered: Map<string, number>): Promise<string[]> {
    const counters = await this.#counters.find({ _id: { $in: [...keys] } }).toArray()
    const lastSeq = new Map(counters.map((counter) => [counter._id, counter.lastSeq]))
    // Read after the counters: an event unnumbered now is in no decision below lastSeq.
    const unnumbered = (await this.#events
      .find(
        { orderingKey: { $in: [...keys] }, keySeq: { $exists: false } },
        { projection: { _id: 1, orderingKey: 1, seq: 1, rev: 1, redrivenFrom: 1 } },
      )
      .toArray()) as Unnumbered[]
    if (unnumbered.length === 0) return []
    const byKey = groupByOrderingKey(unnumbered)
    const at = this.#client.clock()
    const proposed: KeyDecisionDocument[] = [...byKey].map(([key, docs]) => {
      // Enqueue order: a batch's events of one key were given increasing `seq` in input order.
      docs.sort(bySeq)
      const from = lastSeq.get(key) ?? 0
      return { _id: decisionId(key, from), at, key, from, events: docs.map((doc) => doc._id) }
    })
    const taken = await insertUnordered(this.#decisions, proposed)
    const decisions = proposed.filter((_, index) => !taken.has(index))
    const beaten = proposed.filter((_, index) => taken.has(index))
    if (beaten.length > 0)
      decisions.push(
        ...(await this.#decisions.find({ _id: { $in: beaten.map((decision) => decision._id) } }).toArray()),
      )
    const versions = new Map<string, Version>(unnumbered.map((doc) => [doc._id, doc]))
    await this.#complete(decisions, versions, numbered)
    return beaten.map((decision) => decision.key)
  }

  /**
   * Applies then advances `decisions`; `versions` are versions read of some of their events.
   * Records in `numbered` the events that hold their decided number.
   */
  async #complete(
    decisions: readonly KeyDecisionDocument[],
    versions: ReadonlyMap<string, Version>,
    numbered: Map<string, number>,
  ): Promise<void> {
    const wanted = new Map<string, number>()
    for (const decision of decisions)
      for (const [index, id] of decision.events.entries()) wanted.set(id, decision.from + 1 + index)
    const holding = await this.#apply(wanted, versions)
    for (const [id, keySeq] of wanted) if (holding.has(id)) numbered.set(id, keySeq)
    await this.#advance(decisions)
  }

  /**
   * Sets each event's decided number with the store's compare-and-set, where it is still
   * unset: an event read again after a lost write (an unfenced change of the event, such
   * as markAsPublishing, or a rival applying the same decision) gets the same number.
   * Answers the events that hold their decided number (set here or by a rival).
   *
   * A redriven dead letter is unnumbered again (redrives.ts), and was listed by the decision
   * that first numbered it: a numberer that paused since could complete that decision now.
   * A decision made before the redrive gives it at most the number it had (`redrivenFrom`),
   * every decision after it a higher one, so a number not above `redrivenFrom` is not applied.
   */
  async #apply(
    wanted: ReadonlyMap<string, number>,
    versions: ReadonlyMap<string, Version>,
  ): Promise<Set<string>> {
    const holding = new Set<string>()
    const current = (id: string, version: Version | undefined): version is Version => {
      const keySeq = wanted.get(id)
      return version !== undefined && keySeq !== undefined && keySeq > (version.redrivenFrom ?? 0)
    }
    let pending = [...wanted.keys()]
    let known = versions
    for (let attempt = 1; pending.length > 0; attempt++) {
      if (attempt > 20)
        throw new ContentionError(`${pending.length} keyed event(s) kept changing while numbered`)
      const unknown = pending.filter((id) => !known.has(id))
      if (unknown.length > 0) {
        const fresh = (await this.#events
          .find({ _id: { $in: unknown } })
          .project<Version & Pick<OutboxDocument, '_id' | 'keySeq'>>({
            _id: 1,
            rev: 1,
            keySeq: 1,
            redrivenFrom: 1,
          })
          .toArray()) as (Version & Pick<OutboxDocument, '_id' | 'keySeq'>)[]
        const next = new Map(known)
        for (const doc of fresh) {
          if (doc.keySeq === undefined) next.set(doc._id, doc)
          else if (doc.keySeq === wanted.get(doc._id)) holding.add(doc._id)
        }
        known = next
      }
      const writes = pending.flatMap((id) => {
        const version = known.get(id)
        return current(id, version) ? [{ id, rev: version.rev, set: { keySeq: wanted.get(id) } }] : []
      })
      const applied = await this.#client.compareAndSet('outbox', writes)
      for (const id of applied) holding.add(id)
      pending = writes.filter((write) => !applied.has(write.id)).map((write) => write.id)
      // A lost write is read again: the event may be numbered by now, or changed otherwise.
      known = new Map()
    }
    return holding
  }

  /**
   * Moves each decision's counter from `from` to `from + count`. Every writer of one
   * decision writes the same value, and the filter on `from` makes a late writer (whose
   * counter moved on) match nothing: FerretDB's two-step update needs no guard here.
   */
  async #advance(decisions: readonly KeyDecisionDocument[]): Promise<void> {
    const fresh = decisions.filter((decision) => decision.from === 0)
    if (fresh.length > 0)
      // A duplicate: another writer of the same decision created the counter first.
      await insertUnordered(
        this.#counters,
        fresh.map((decision) => ({ _id: decision.key, lastSeq: decision.events.length })),
      )
    const groups = new Map<string, KeyDecisionDocument[]>()
    for (const decision of decisions) {
      if (decision.from === 0) continue
      const group = `${decision.from}:${decision.events.length}`
      groups.set(group, [...(groups.get(group) ?? []), decision])
    }
    for (const group of groups.values()) {
      const [first] = group
      if (!first) continue
      await this.#counters.updateMany(
        { _id: { $in: group.map((decision) => decision.key) }, lastSeq: first.from },
        { $set: { lastSeq: first.from + first.events.length } },
      )
    }
  }
}

/** The keyed documents by their ordering key, each group in input order; unkeyed ones left out. */
export const groupByOrderingKey = <Doc extends { orderingKey?: string | undefined }>(
  docs: readonly Doc[],
): Map<string, Doc[]> => {
  const byKey = new Map<string, Doc[]>()
  for (const doc of docs) {
    if (doc.orderingKey === undefined) continue
    const group = byKey.get(doc.orderingKey)
    if (group) group.push(doc)
    else byKey.set(doc.orderingKey, [doc])
  }
  return byKey
}
