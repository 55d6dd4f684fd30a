import type { TransactWriteItem } from '@aws-sdk/client-dynamodb'
import {
  type AmbientTransactions,
  boundedChunks,
  type ClaimRequest,
  type FencedOutcome,
  type NewOutboxEventParams,
  OUTBOX_STATUSES,
  type OutboxChange,
  type OutboxEvent,
  OutboxRepositoryKernel,
  type RequeueOutcome,
  type StatusCountRows,
} from '@txbox/core'
import {
  backoff,
  DynamoDbContext,
  MAX_TRANSACTION_ACTIONS,
  MAX_TRANSACTION_ITEM_BYTES,
  mapLimit,
  RETRY_CODES,
  type UpdateSpec,
  type Values,
  WRITE_CONCURRENCY,
} from './client.js'
import { type CollectedKey, collectedKeys } from './collector-keys.js'
import { type DynamoDbStoreOptions, resolveOptions } from './dynamodb-options.js'
import { DynamoDbFailure } from './errors.js'
import {
  chainBytes,
  counterOf,
  counterSpec,
  holdingCondition,
  type KeyCounter,
  linkOfItem,
  parkedAttributes,
  placement,
  predecessorState,
  releasedCondition,
  skippedSpec,
  UNPARK_ATTRIBUTES,
  unparkSpec,
} from './key-chain.js'
import {
  type ChainLink,
  CLAIM_INDEX,
  type ClaimPartition,
  chainedOrderKey,
  chainOf,
  claimPk,
  keyCounterPk,
  nextSequence,
  orderKey,
  orderKeyOf,
  outboxIdOf,
  outboxPk,
  outboxStatusPk,
  STATUS_INDEX,
  timeKey,
} from './keys.js'
import { assertItemFits, type Item, itemBytes, N, num, requiredStr, S, toOutboxEvent } from './rows.js'

/** Rounds of "insert, else read" before a row that keeps vanishing is reported. */
const MAX_ATTEMPTS = 5
/**
 * Rounds of a keyed enqueue's transaction (optimistic concurrency on the key's counter:
 * each round that loses, lost to an enqueue of the same key that committed) before it is
 * reported as a retryable conflict. Only a key enqueued by ~50 writers at once gets there.
 */
const MAX_KEY_ATTEMPTS = 50
/**
 * Keyed events per TransactWriteItems of the adapter's own: each may bring its key's counter
 * update, so 50 events always fit in DynamoDB's 100 actions.
 */
const KEYED_PER_TRANSACTION = MAX_TRANSACTION_ACTIONS / 2
/** The same when events may also be parked at enqueue (a third action: their predecessor's `nextEventId`). */
const KEYED_PER_PARKING_TRANSACTION = Math.floor(MAX_TRANSACTION_ACTIONS / 3)
/** Keyed enqueues, while parking at enqueue is off, between two that try it again. */
const PARKING_PROBE_EVERY = 16
/** Ordering keys whose last counter value an outbox instance remembers (see `#counters`). */
const COUNTER_CACHE = 10_000
/** Room kept in a keyed transaction for the counter items (a key and an id each, at their longest). */
const COUNTER_BYTES = 2 * 1024
/**
 * Weight of the latest keyed enqueue in `#unknownKeysStored` (an exponential average), and
 * the average from which an instance reads the counters of keys it does not remember
 * instead of taking them for new keys.
 */
const GUESS_WEIGHT = 0.25
const GUESS_LIMIT = 0.5
/** Under contention a claim picks from a window up to 2^MAX_SPREAD times the batch it wants. */
const MAX_SPREAD = 4

/** `count` entries of `items` picked at random (all of them when there are not more). */
const sample = <T>(items: readonly T[], count: number): T[] => {
  const pool = [...items]
  for (let index = 0; index < Math.min(count, pool.length); index++) {
    const pick = index + Math.floor(Math.random() * (pool.length - index))
    ;[pool[index], pool[pick]] = [pool[pick] as T, pool[index] as T]
  }
  return pool.slice(0, count)
}

const bySeqKey = (a: Item, b: Item): number => {
  const x = a.seqKey?.S ?? ''
  const y = b.seqKey?.S ?? ''
  return x < y ? -1 : x > y ? 1 : 0
}

/** `items` in order, cut into chunks one TransactWriteItems can carry (100 actions, the size limit). */
const transactionChunks = (items: readonly Item[]): Item[][] =>
  boundedChunks(items, {
    maxItems: MAX_TRANSACTION_ACTIONS,
    maxBytes: MAX_TRANSACTION_ITEM_BYTES,
    sizeOf: itemBytes,
  })

const FENCE = '#status = :publishing AND #claimedBy = :worker'
/** Pending and due, or publishing with an expired lease (the claim index only proposes; this decides). */
const CLAIMABLE =
  '(#status = :pending AND #availableAt <= :now) OR (#status = :publishing AND #leaseUntil <= :now)'
const EXISTS = 'attribute_exists(#pk)'
const NOT_STORED = 'attribute_not_exists(#pk)'
/** The attributes that put an event in the claim index; removed when it can no longer be claimed. */
const LEAVE_DUE = `#gsi1pk, #gsi1sk, #dueAt, ${UNPARK_ATTRIBUTES}`

/**
 * What each action of a keyed enqueue's transaction is: the key's counter, an event's put,
 * or the `nextEventId` of the key's last event, behind which the first new event is parked.
 */
type KeyedAction =
  | { kind: 'counter'; key: string }
  | { kind: 'put'; base: Item }
  | { kind: 'prev'; key: string }

/** What the chunks of one keyed enqueue share (see `#insertKeyed`). */
interface KeyedRound {
  /** Each key's counter as known: updated as chunks commit or come back cancelled. */
  counters: Map<string, KeyCounter>
  /** The answer: stored and stored-before events by id. */
  found: Map<string, OutboxEvent>
  nowMs: number
  /** Keys taken for new without a read, and those of them that had a counter after all. */
  guessed: ReadonlySet<string>
  guessedWrong: Set<string>
  /** Whether new events are parked at enqueue behind a predecessor; how often that was tried, and failed. */
  parking: boolean
  parksTried: number
  parksFailed: number
}

/**
 * The outbox on DynamoDB. Each event is one item (`pk = ob#e#<eventId>`); two sparse,
 * sharded indexes replace the GSI on `status` that caps a naive design at one partition.
 * Every state change is one conditional UpdateItem whose condition is the state the
 * contract requires, so DynamoDB itself arbitrates races. No read ever decides a write;
 * a read after a false condition only tells "not stored" from "lease lost".
 */
export class DynamoDbOutboxRepository extends OutboxRepositoryKernel<TransactWriteItem[]> {
  readonly #db: DynamoDbContext
  /** The time part of the last order key: never goes back, so a clock set back keeps FIFO. */
  #lastOrderMs = 0
  /**
   * How contended this instance's recent claims were (0..MAX_SPREAD): raised when a claim
   * loses races, lowered by a claim that loses none. See `claimEvents`.
   */
  #spread = 0
  /**
   * The last counter value this instance wrote per ordering key (at most COUNTER_CACHE keys,
   * the oldest forgotten first): a key enqueued again from here needs no read before its
   * transaction. Only a guess: the transaction's condition checks it.
   */
  readonly #counters = new Map<string, KeyCounter>()
  /**
   * How often, lately, a keyed enqueue met a stored counter among the keys this instance did
   * not remember (0..1, see GUESS_WEIGHT). While it is low, such keys are taken for new keys
   * without reading their counters first (the transaction's condition that the counter does
   * not exist checks the guess; a wrong guess costs a cancelled round whose reasons return
   * the stored counters); once it is high, they are read first (one BatchGetItem).
   */
  #unknownKeysStored = 0
  /**
   * How often, lately, the last event of a key was no longer pending or publishing when an
   * enqueue of the key tried to park its new event behind it (0..1, averaged like
   * `#unknownKeysStored`). While it is low, keyed enqueues park their events at once (the
   * key has a backlog: claims then read only heads); once high, they leave that to the
   * claims, and try again every PARKING_PROBE_EVERY calls.
   */
  #predecessorsReleased = 0
  #keyedCalls = 0

  /** `ambient` is internal: the `store.transaction` that `createDynamoDbStore` gives both repositories. */
  constructor(options: DynamoDbStoreOptions, ambient?: AmbientTransactions<TransactWriteItem[]>) {
    const db = new DynamoDbContext(resolveOptions(options), ambient)
    super({ ...db.settings, maxEventBytes: db.options.maxEventBytes, orderingKeys: true })
    this.#db = db
  }

  #remember(key: string, counter: KeyCounter): void {
    this.#counters.delete(key)
    this.#counters.set(key, counter)
    if (this.#counters.size > COUNTER_CACHE) {
      const oldest = this.#counters.keys().next()
      if (!oldest.done) this.#counters.delete(oldest.value)
    }
  }

  /** Records whether the keys a keyed enqueue did not remember had stored counters (see `#unknownKeysStored`). */
  #learnUnknownKeys(stored: boolean): void {
    this.#unknownKeysStored += GUESS_WEIGHT * ((stored ? 1 : 0) - this.#unknownKeysStored)
  }

  /** The enqueue-order key: time, then this process's sequence (docs/CONTRACT.md §4). */
  #nextOrderKey(nowMs: number): string {
    this.#lastOrderMs = Math.max(nowMs, this.#lastOrderMs)
    return orderKey(this.#lastOrderMs, nextSequence())
  }

  /** The item of a new event; PayloadTooLargeError (before any I/O) when it cannot fit. */
  #newItem(params: NewOutboxEventParams, nowMs: number): Item {
    const shard = this.#db.shardOf(params.eventId)
    const availableAt = params.availableAt.getTime()
    const key = this.#nextOrderKey(nowMs)
    const ready = availableAt <= nowMs
    const item: Item = {
      pk: S(outboxPk(params.eventId)),
      eventId: S(params.eventId),
      subject: S(params.subject),
      payload: S(params.payload),
      status: S('pending'),
      enqueuedAt: N(nowMs),
      retryCount: N(0),
      availableAt: N(availableAt),
      seqKey: S(key),
      dueAt: N(availableAt),
      gsi1pk: S(claimPk(ready ? 'ready' : 'timed', shard)),
      gsi1sk: S(ready ? key : timeKey(availableAt)),
      gsi2pk: S(outboxStatusPk('pending', shard)),
      gsi2sk: S(key),
    }
    if (params.headers !== undefined) item.headers = S(params.headers)
    if (params.orderingKey === undefined) assertItemFits(item, params.eventId)
    else {
      item.orderingKey = S(params.orderingKey)
      assertItemFits(item, params.eventId, chainBytes(params.orderingKey))
    }
    return item
  }

  /**
   * A keyed event's item at its place in its key's chain: `keySeq`, the predecessor, the
   * chain link in `seqKey` (and the index keys that copy it), and either its index placement
   * or, `parked`, the recheck slot (see key-chain.ts).
   */
  #linked(base: Item, link: ChainLink, parked: boolean, nowMs: number): Item {
    const seqKey = chainedOrderKey(requiredStr(base, 'seqKey'), link)
    const shard = this.#db.shardOf(requiredStr(base, 'eventId'))
    const availableAt = num(base, 'availableAt') ?? nowMs
    const item: Item = { ...base, keySeq: N(link.keySeq), seqKey: S(seqKey), gsi2sk: S(seqKey) }
    if (link.prevEventId !== undefined) item.prevEventId = S(link.prevEventId)
    if (parked) return Object.assign(item, parkedAttributes(availableAt, nowMs, seqKey, shard))
    const place = placement(availableAt, nowMs, seqKey, shard)
    item.gsi1pk = S(place.pk)
    item.gsi1sk = S(place.sk)
    return item
  }

  /**
   * The items of `group` (events of `key`, in input order) chained after `counter`: keySeqs
   * `lastSeq + 1...`, each one's predecessor the one before it. The first waits in the claim
   * index (a claim checks its predecessor, and parks it if that one still holds the key)
   * unless `firstParked`; the others are parked at once behind it, each named in the
   * previous one's `nextEventId`.
   */
  #chain(
    key: string,
    group: readonly Item[],
    counter: KeyCounter,
    nowMs: number,
    firstParked = false,
  ): { items: Item[]; next: KeyCounter } {
    let { lastSeq, lastEventId } = counter
    const items = group.map((base, index) => {
      lastSeq += 1
      const link: ChainLink = {
        orderingKey: key,
        keySeq: lastSeq,
        prevEventId: lastSeq > 1 ? lastEventId : undefined,
      }
      const item = this.#linked(base, link, index > 0 || firstParked, nowMs)
      const following = group[index + 1]
      if (following) item.nextEventId = S(requiredStr(following, 'eventId'))
      lastEventId = requiredStr(base, 'eventId')
      return item
    })
    return { items, next: { lastSeq, lastEventId } }
  }

  protected async insertEvents(
    events: readonly NewOutboxEventParams[],
    now: Date,
    tx: TransactWriteItem[] | undefined,
  ): Promise<ReadonlyMap<string, OutboxEvent>> {
    // Order keys follow input order; every item is built (and size-checked) before any I/O.
    const nowMs = now.getTime()
    const items = events.map((event) => this.#newItem(event, nowMs))
    if (tx) {
      this.#db.checkCollector(
        tx,
        items.map((item) => item.pk?.S ?? ''),
      )
      const stored = await this.#enlist(tx, items, nowMs)
      return new Map(stored.map((event) => [event.eventId, event]))
    }
    const unkeyed = items.filter((item) => item.orderingKey === undefined)
    const keyed = items.filter((item) => item.orderingKey !== undefined)
    const [plain, chained] = await Promise.all([
      this.#insertUnkeyed(unkeyed),
      this.#insertKeyed(keyed, nowMs),
    ])
    return new Map([...plain, ...chained].map((event) => [event.eventId, event]))
  }

  async #insertUnkeyed(items: readonly Item[]): Promise<OutboxEvent[]> {
    if (items.length === 0) return []
    if (this.#db.options.batchEnqueue === 'transaction' && items.length > 1)
      return this.#insertInTransactions(items)
    // BatchWriteItem cannot be conditional, so it would overwrite stored events: each new
    // event is its own conditional put, in parallel (single-rate WCU, one request each).
    return mapLimit(items, WRITE_CONCURRENCY, (item) => this.#insert(item))
  }

  /**
   * Inserts keyed events (whatever `batchEnqueue` says: a keySeq needs its counter written
   * in the same transaction). Takes the keys' counters as remembered, guessed new, or read
   * (one BatchGetItem; see `#unknownKeysStored`), then per chunk of up to 50 events (33 when
   * parking) one TransactWriteItems: each key's counter update, conditioned on the value
   * taken, the events' conditional puts, and, while keys have backlogs (see
   * `#predecessorsReleased`), the `nextEventId` of each key's last event, conditioned on it
   * still holding the key, so that the key's first new event is parked behind it at once.
   * A cancelled chunk is rebuilt from its cancellation reasons: a counter that moved (another
   * enqueue of the key committed, or a wrong guess) is taken from the reason (ALL_OLD) and
   * the chunk chained again after it; a stored id
   * (duplicate) is answered as stored and left out, so it takes no keySeq and leaves no
   * hole; a predecessor that no longer holds its key gets no parked event in the next round;
   * a conflicting transaction is waited out. Optimistic concurrency, bounded by
   * MAX_KEY_ATTEMPTS, then a retryable conflict.
   */
  async #insertKeyed(items: readonly Item[], nowMs: number): Promise<OutboxEvent[]> {
    if (items.length === 0) return []
    const keyOf = (item: Item): string => requiredStr(item, 'orderingKey')
    const keys = [...new Set(items.map(keyOf))]
    // Counters this instance wrote or saw last are taken as they were. The others are taken
    // for new keys (no counter item) while that guess has been right lately, else read. A
    // counter that is not what was taken cancels the round and comes back in its reason.
    const unknown = keys.filter((key) => !this.#counters.has(key))
    const guess = unknown.length > 0 && this.#unknownKeysStored < GUESS_LIMIT
    const read =
      unknown.length > 0 && !guess
        ? await this.#db.batchGet(unknown.map(keyCounterPk))
        : new Map<string, Item>()
    if (unknown.length > 0 && !guess) this.#learnUnknownKeys(read.size > 0)
    const counters = new Map(
      keys.map((key) => [key, this.#counters.get(key) ?? counterOf(read.get(keyCounterPk(key)))]),
    )
    this.#keyedCalls++
    const round: KeyedRound = {
      counters,
      found: new Map<string, OutboxEvent>(),
      nowMs,
      guessed: new Set(guess ? unknown : []),
      guessedWrong: new Set<string>(),
      parking: this.#predecessorsReleased < GUESS_LIMIT || this.#keyedCalls % PARKING_PROBE_EVERY === 0,
      parksTried: 0,
      parksFailed: 0,
    }
    // Parking at enqueue needs a third action per event only when a key has events already.
    const perTransaction =
      round.parking && (items.length > keys.length || [...counters.values()].some((c) => c.lastSeq > 0))
        ? KEYED_PER_PARKING_TRANSACTION
        : KEYED_PER_TRANSACTION
    const chunks = boundedChunks(items, {
      maxItems: perTransaction,
      maxBytes: MAX_TRANSACTION_ITEM_BYTES - perTransaction * 2 * COUNTER_BYTES,
      sizeOf: (item) => itemBytes(item) + chainBytes(keyOf(item)),
    })
    // Chunks that share no key are independent: each wave runs its chunks at once, and a
    // chunk goes in a later wave than every earlier chunk with one of its keys, so one key's
    // events still commit in input order.
    const waves: Item[][][] = []
    const waveOfKey = new Map<string, number>()
    for (const chunk of chunks) {
      const chunkKeys = [...new Set(chunk.map(keyOf))]
      let wave = Math.max(-1, ...chunkKeys.map((key) => waveOfKey.get(key) ?? -1)) + 1
      while ((waves[wave]?.length ?? 0) >= WRITE_CONCURRENCY) wave++
      waves[wave] = [...(waves[wave] ?? []), chunk]
      for (const key of chunkKeys) waveOfKey.set(key, wave)
    }
    for (const wave of waves) await Promise.all(wave.map((chunk) => this.#commitKeyed(chunk, round)))
    if (guess) this.#learnUnknownKeys(round.guessedWrong.size > 0)
    if (round.parksTried > 0) {
      const released = round.parksFailed / round.parksTried
      this.#predecessorsReleased += GUESS_WEIGHT * (released - this.#predecessorsReleased)
    }
    return items.map((item) => round.found.get(requiredStr(item, 'eventId')) as OutboxEvent)
  }

  /**
   * One chunk of keyed events, chained after `counters` (updated as it commits), in one
   * TransactWriteItems, rebuilt from the cancellation reasons until it commits (see
   * `#insertKeyed`). Stored and stored-before events go into `found`.
   */
  async #commitKeyed(chunk: readonly Item[], round: KeyedRound): Promise<void> {
    const { counters, found, nowMs, guessed, guessedWrong } = round
    // Keys whose last event was found released: their new events go to the claim index.
    const released = new Set<string>()
    const keyOf = (item: Item): string => requiredStr(item, 'orderingKey')
    let pending = chunk
    for (let attempt = 1; pending.length > 0; attempt++) {
      if (attempt > MAX_KEY_ATTEMPTS) {
        throw new DynamoDbFailure(
          'conflict',
          true,
          `ordering key ${JSON.stringify(keyOf(pending[0] as Item))} kept being enqueued by others during ${MAX_KEY_ATTEMPTS} attempts; try again`,
        )
      }
      const groups = new Map<string, Item[]>()
      for (const item of pending) groups.set(keyOf(item), [...(groups.get(keyOf(item)) ?? []), item])
      const actions: TransactWriteItem[] = []
      const roles: KeyedAction[] = []
      const written: Item[] = []
      const advanced = new Map<string, KeyCounter>()
      for (const [key, group] of groups) {
        const counter = counters.get(key) ?? counterOf(undefined)
        const prevId = counter.lastSeq > 0 ? counter.lastEventId : undefined
        // Not behind an id this round puts again (a duplicate of the key's last event): one
        // transaction cannot write one item twice, and the put is answered as stored anyway.
        const park =
          round.parking &&
          prevId !== undefined &&
          !released.has(key) &&
          !pending.some((item) => item.eventId?.S === prevId)
        const { items: linked, next } = this.#chain(key, group, counter, nowMs, park)
        actions.push(this.#db.updateAction(keyCounterPk(key), counterSpec(counter, next), true))
        roles.push({ kind: 'counter', key })
        if (park && prevId !== undefined) {
          // Parked behind the key's last event, in the same instant as that event learns of
          // it (the write that makes it sent or failed puts this one back), while it holds
          // the key; if it no longer does, the round is cancelled and goes to the claim index.
          const holding = holdingCondition({
            orderingKey: key,
            keySeq: counter.lastSeq + 1,
            prevEventId: prevId,
          })
          actions.push(
            this.#db.updateAction(outboxPk(prevId), {
              update: 'SET #nextEventId = :next',
              condition: holding.condition,
              values: { ...holding.values, ':next': S(requiredStr(group[0] as Item, 'eventId')) },
            }),
          )
          roles.push({ kind: 'prev', key })
          round.parksTried++
        }
        group.forEach((base, index) => {
          actions.push(this.#db.putAction(linked[index] as Item, NOT_STORED, true))
          roles.push({ kind: 'put', base })
        })
        written.push(...linked)
        advanced.set(key, next)
      }
      const cancelled = await this.#db.transact(actions)
      if (!cancelled) {
        for (const [key, next] of advanced) {
          counters.set(key, next)
          this.#remember(key, next)
        }
        for (const item of written) found.set(requiredStr(item, 'eventId'), toOutboxEvent(item))
        break
      }
      const stored = new Set<Item>()
      const unreturned: Item[] = []
      let lostRace = true
      cancelled.reasons.forEach((reason, index) => {
        const role = roles[index] as KeyedAction
        if (reason.code === 'ConditionalCheckFailed') {
          lostRace = false
          if (role.kind === 'prev') {
            released.add(role.key)
            round.parksFailed++
          } else if (role.kind === 'counter') {
            if (guessed.has(role.key) && reason.item) guessedWrong.add(role.key)
            counters.set(role.key, counterOf(reason.item))
            this.#counters.delete(role.key)
          } else if (reason.item) {
            found.set(requiredStr(role.base, 'eventId'), toOutboxEvent(reason.item))
            stored.add(role.base)
          } else unreturned.push(role.base)
        } else if (!RETRY_CODES.has(reason.code)) throw cancelled.error
      })
      // A stored id whose item did not come back is read; if cleanup deleted it since, it goes in again.
      const reread = await this.#db.batchGet(unreturned.map((item) => requiredStr(item, 'pk')))
      for (const base of unreturned) {
        const item = reread.get(requiredStr(base, 'pk'))
        if (!item) continue
        found.set(requiredStr(base, 'eventId'), toOutboxEvent(item))
        stored.add(base)
      }
      pending = pending.filter((item) => !stored.has(item))
      // Only conflicts with other transactions: wait before the next round. A lost counter
      // is retried at once, then with a short jittered pause so that many writers of one
      // key spread out.
      if (lostRace) await backoff(Math.min(attempt, 6))
      else if (attempt > 2) await backoff(1)
    }
  }

  /** Inserts unless the id is stored; returns what is stored either way. */
  async #insert(item: Item): Promise<OutboxEvent> {
    const pk = item.pk?.S ?? ''
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (await this.#db.put(item, NOT_STORED)) return toOutboxEvent(item)
      // The id is stored: first write wins. A strongly consistent read returns it.
      const stored = await this.#db.get(pk)
      if (stored) return toOutboxEvent(stored)
      // Deleted (cleanup) between the two calls: try the insert again.
    }
    throw new DynamoDbFailure('conflict', true, `event ${pk} was deleted repeatedly while being created`)
  }

  /**
   * Inserts the events not stored yet, up to 100 (and ~3.5 MB) per TransactWriteItems of
   * conditional puts: one request per chunk instead of one per event. A stored id cancels
   * its chunk, whose cancellation reasons return the stored item (ALL_OLD), so the next
   * round puts only the others. Rounds that keep losing (other transactions on the same
   * items) end in the per-event path, which always makes progress.
   */
  async #insertInTransactions(items: readonly Item[]): Promise<OutboxEvent[]> {
    const found = new Map<string, OutboxEvent>()
    const leftover: Item[] = []
    for (const chunk of transactionChunks(items)) {
      let pending = chunk
      // A single put needs no transaction: the per-event path takes it.
      for (let attempt = 0; pending.length > 1 && attempt < MAX_ATTEMPTS; attempt++) {
        const cancelled = await this.#db.putAllNew(pending, NOT_STORED)
        if (!cancelled) {
          for (const item of pending) found.set(requiredStr(item, 'eventId'), toOutboxEvent(item))
          pending = []
          break
        }
        const next: Item[] = []
        cancelled.forEach((put, index) => {
          const item = pending[index] as Item
          if (put.outcome === 'retry') next.push(item)
          else if (put.item) found.set(requiredStr(item, 'eventId'), toOutboxEvent(put.item))
          // Stored, but no item came back: the per-event path reads it.
          else leftover.push(item)
        })
        // Only a lost race leaves nothing stored in a cancelled chunk: wait before the retry.
        if (next.length === pending.length) await backoff(attempt + 1)
        pending = next
      }
      leftover.push(...pending)
    }
    const rest = await mapLimit(leftover, WRITE_CONCURRENCY, (item) => this.#insert(item))
    for (const event of rest) found.set(event.eventId, event)
    return items.map((item) => found.get(requiredStr(item, 'eventId')) as OutboxEvent)
  }

  /**
   * Appends a conditional Put per event not yet stored to the caller's collector and returns
   * the events as they will be stored. A stored id is returned as stored and adds no action,
   * like outside a transaction. An id created by someone else between this read and the
   * caller's commit cancels the caller's transaction with reason ConditionalCheckFailed at
   * that action's index: the transaction never overwrites an event.
   */
  async #enlist(tx: TransactWriteItem[], items: Item[], nowMs: number): Promise<OutboxEvent[]> {
    const keys = [...new Set(items.flatMap((item) => item.orderingKey?.S ?? []))]
    // The events' ids and their keys' counters, in one read.
    const stored = await this.#db.batchGet([
      ...items.map((item) => requiredStr(item, 'pk')),
      ...keys.map(keyCounterPk),
    ])
    const fresh = items.filter((item) => !stored.has(requiredStr(item, 'pk')))
    const collected = collectedKeys(tx)
    const groups = new Map<string, Item[]>()
    for (const item of fresh) {
      const key = item.orderingKey?.S
      if (key !== undefined) groups.set(key, [...(groups.get(key) ?? []), item])
    }
    const newCounters = [...groups.keys()].filter((key) => !collected.has(key)).map(keyCounterPk)
    // Checked again now: other calls may have added actions to the collector meanwhile.
    this.#db.checkCollector(tx, [...fresh.map((item) => requiredStr(item, 'pk')), ...newCounters])
    for (const item of fresh)
      if (item.orderingKey === undefined) tx.push(this.#db.putAction(item, NOT_STORED))
    for (const [key, group] of groups) {
      const entry =
        collected.get(key) ?? this.#collectKey(tx, key, counterOf(stored.get(keyCounterPk(key))), nowMs)
      collected.set(key, entry)
      entry.add(group)
    }
    // A keyed event's keySeq is final only at commit (store.transaction chains it again after
    // an enqueue of its key that committed first), so the answer inside has none yet.
    return items.map((item) => toOutboxEvent(stored.get(requiredStr(item, 'pk')) ?? item))
  }

  /**
   * Starts a key's chain in collector `tx` after `read`: the counter update goes in now, and
   * each `add` appends the key's next events (their puts pushed to `tx`) and rebuilds the
   * chain, as does `rechain` after a commit that found the counter moved: every put of the
   * key gets its keySeq, predecessor and placement again, in place.
   */
  #collectKey(tx: TransactWriteItem[], key: string, read: KeyCounter, nowMs: number): CollectedKey {
    const bases: Item[] = []
    const puts: TransactWriteItem[] = []
    const counterPk = keyCounterPk(key)
    const counterAction: TransactWriteItem = this.#db.updateAction(counterPk, counterSpec(read, read), true)
    tx.push(counterAction)
    let after = read
    const rebuild = () => {
      const { items: chained, next } = this.#chain(key, bases, after, nowMs)
      for (const [index, put] of puts.entries()) if (put.Put) put.Put.Item = chained[index] as Item
      counterAction.Update = this.#db.updateAction(counterPk, counterSpec(after, next), true).Update
    }
    return {
      counterAction,
      rechain: (current) => {
        after = current
        rebuild()
      },
      add: (group) => {
        for (const base of group) {
          bases.push(base)
          const put = this.#db.putAction(base, NOT_STORED)
          puts.push(put)
          tx.push(put)
        }
        rebuild()
      },
    }
  }

  /** The condition and values of a write fenced by `workerId` (without it, the event only has to exist). */
  #fenced(spec: UpdateSpec, workerId: string | undefined): UpdateSpec {
    const values: Values = { ...spec.values, ':publishing': S('publishing') }
    if (workerId !== undefined) values[':worker'] = S(workerId)
    return { update: spec.update, condition: workerId === undefined ? EXISTS : FENCE, values }
  }

  protected async applyFenced(
    eventId: string,
    change: OutboxChange,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    const pk = outboxPk(eventId)
    const written = await this.#db.update(pk, this.#fenced(this.#changeSpec(eventId, change), workerId))
    if (written) {
      // A keyed event that stops holding its key wakes the one parked behind it.
      if (change.status !== 'pending') await this.#wakeSuccessors([written])
      return 'applied'
    }
    // A false condition is told apart afterwards: a missing item, or a lease lost.
    return (await this.#db.exists(pk)) ? 'lost' : 'missing'
  }

  #changeSpec(eventId: string, change: OutboxChange): UpdateSpec {
    const shard = this.#db.shardOf(eventId)
    if (change.status === 'sent') return this.#sentSpec(eventId, change.sentAt.getTime())
    if (change.status === 'failed') {
      return {
        // Dead letters are listed in enqueue order, so their status entry sorts by seqKey.
        update:
          'SET #status = :failed, #errorMessage = :msg, #retryCount = #retryCount + :one, #gsi2pk = :g2pk, #gsi2sk = #seqKey' +
          ` REMOVE #claimedBy, #leaseUntil, ${LEAVE_DUE}, #expiresAt`,
        values: {
          ':failed': S('failed'),
          ':msg': S(change.errorMessage),
          ':one': N(1),
          ':g2pk': S(outboxStatusPk('failed', shard)),
        },
      }
    }
    // Due now: back into `ready` at its enqueue position. Backoff: into `timed` until then.
    const availableAt = change.availableAt.getTime()
    const ready = availableAt <= change.now.getTime()
    return {
      update:
        'SET #status = :pending, #retryCount = #retryCount + :one, #errorMessage = :msg, #availableAt = :available,' +
        ` #dueAt = :available, #gsi1pk = :g1pk, #gsi1sk = ${ready ? '#seqKey' : ':g1sk'}, #gsi2pk = :g2pk, #gsi2sk = #seqKey` +
        ` REMOVE #claimedBy, #leaseUntil, #expiresAt, ${UNPARK_ATTRIBUTES}`,
      values: {
        ':pending': S('pending'),
        ':one': N(1),
        ':msg': S(change.errorMessage),
        ':available': N(availableAt),
        ':g1pk': S(claimPk(ready ? 'ready' : 'timed', shard)),
        ...(ready ? {} : { ':g1sk': S(timeKey(availableAt)) }),
        ':g2pk': S(outboxStatusPk('pending', shard)),
      },
    }
  }

  /** Leaves for `sent`: out of the claim index, into `ob#sent#<shard>` by sentAt. */
  #sentSpec(eventId: string, nowMs: number): UpdateSpec {
    const statusPk = outboxStatusPk('sent', this.#db.shardOf(eventId))
    return this.#db.finalSpec('sent', 'sentAt', statusPk, nowMs, `#claimedBy, #leaseUntil, ${LEAVE_DUE}`)
  }

  protected async setPublishing(eventId: string, now: Date): Promise<boolean> {
    const nowMs = now.getTime()
    const pk = outboxPk(eventId)
    const values: Values = {
      ':publishing': S('publishing'),
      ':now': N(nowMs),
      ':g2pk': S(outboxStatusPk('publishing', this.#db.shardOf(eventId))),
      ':g2sk': S(timeKey(nowMs)),
    }
    const set = '#status = :publishing, #claimedAt = :now, #gsi2pk = :g2pk, #gsi2sk = :g2sk'
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      // claimedBy/leaseUntil stay as they are. A leased event is already in the timed
      // partition of the claim index (reclaimable when the lease expires) and stays there;
      // one without a lease must leave the index, since only resetStale may free an event
      // marked publishing by hand. Which case applies is part of each write's condition,
      // so a concurrent claim cannot slip in between.
      const leased = await this.#db.update(pk, {
        update: `SET ${set} REMOVE #expiresAt`,
        condition: 'attribute_exists(#leaseUntil)',
        values,
      })
      if (leased) return true
      const unleased = await this.#db.update(pk, {
        update: `SET ${set} REMOVE ${LEAVE_DUE}, #expiresAt`,
        condition: `${EXISTS} AND attribute_not_exists(#leaseUntil)`,
        values,
      })
      if (unleased) return true
      if (!(await this.#db.exists(pk))) return false
    }
    throw new DynamoDbFailure('conflict', true, `event ${pk} kept changing; try again`)
  }

  /**
   * Claimable index entries, the first `window` in
   * enqueue order: the head of `ready` plus the due range of `timed`, merged by the
   * projected seqKey. Exact whenever no more than `window` delayed, retried or lease-expired
   * events are due at once; beyond that the earliest-due of them come first. With `sampling`
   * the window only needs to be a wide slice of the head, so each shard reads its share of it.
   */
  async #claimable(
    nowMs: number,
    window: number,
    skip: ReadonlySet<string>,
    sampling = false,
  ): Promise<Item[]> {
    const now = N(nowMs)
    const perShard = sampling ? Math.ceil(window / this.#db.options.shards) : window
    const query = (name: ClaimPartition, range: { skBelow?: string; filter?: string; values?: Values }) =>
      this.#db.firstAcrossShards(
        (shard) => ({
          index: CLAIM_INDEX,
          pkName: 'gsi1pk',
          pk: claimPk(name, shard),
          skName: 'gsi1sk',
          ...range,
        }),
        window,
        skip,
        perShard,
      )
    const parts = await Promise.all([
      // `ready` holds events due when written; the filter only guards a clock set back.
      query('ready', { filter: '#dueAt <= :now', values: { ':now': now } }),
      query('timed', { skBelow: timeKey(nowMs + 1) }),
    ])
    return parts.flat().sort(bySeqKey).slice(0, window)
  }

  /**
   * Due pending events from the status index, where every pending event sorts by its enqueue
   * position (the claim index would miss events parked behind their key's predecessor).
   */
  protected async selectPending(now: Date, limit: number): Promise<OutboxEvent[]> {
    const nowMs = now.getTime()
    const entries = await this.#db.firstAcrossShards(
      (shard) => ({
        index: STATUS_INDEX,
        pkName: 'gsi2pk',
        pk: outboxStatusPk('pending', shard),
        skName: 'gsi2sk',
        filter: '#availableAt <= :now',
        values: { ':now': N(nowMs) },
      }),
      limit,
    )
    const items = await this.#db.confirm(
      entries,
      (item) => item.status?.S === 'pending' && (num(item, 'availableAt') ?? Infinity) <= nowMs,
    )
    return items.map(toOutboxEvent)
  }

  protected deleteSent(cutoff: Date, limit: number): Promise<number> {
    return this.#db.deleteBefore((shard) => outboxStatusPk('sent', shard), 'sent', 'sentAt', cutoff, limit)
  }

  protected async resetPublishing(cutoff: Date, _now: Date, limit: number): Promise<number> {
    const cutoffMs = cutoff.getTime()
    return this.#db.sweep(
      (shard) => outboxStatusPk('publishing', shard),
      cutoffMs,
      limit,
      async (entry) => {
        const pk = requiredStr(entry, 'pk')
        const shard = this.#db.shardOf(outboxIdOf(pk))
        // availableAt is projected into the status index: the event goes back to the
        // `timed` partition keyed by it (due already, so the next claim sees it). The
        // condition re-checks claimedAt (only claim time counts) and that availableAt is
        // the value read, so an event claimed or retried since keeps its new state.
        const availableAt = num(entry, 'availableAt') ?? num((await this.#db.get(pk)) ?? {}, 'availableAt')
        if (availableAt === undefined) return false
        const reset = await this.#db.update(pk, {
          update:
            'SET #status = :pending, #gsi1pk = :g1pk, #gsi1sk = :g1sk, #dueAt = #availableAt, #gsi2pk = :g2pk,' +
            ' #gsi2sk = #seqKey REMOVE #claimedBy, #leaseUntil, #expiresAt',
          condition: '#status = :publishing AND #claimedAt < :cutoff AND #availableAt = :available',
          values: {
            ':pending': S('pending'),
            ':publishing': S('publishing'),
            ':cutoff': N(cutoffMs),
            ':available': N(availableAt),
            ':g1pk': S(claimPk('timed', shard)),
            ':g1sk': S(timeKey(availableAt)),
            ':g2pk': S(outboxStatusPk('pending', shard)),
          },
        })
        return reset !== undefined
      },
    )
  }

  protected countStatuses(): Promise<StatusCountRows> {
    return this.#db.countStatuses(OUTBOX_STATUSES, outboxStatusPk)
  }

  /** The claiming write: `publishing` with this worker's lease, into `timed` at the lease's end. */
  #claimSpec(pk: string, request: ClaimRequest): UpdateSpec {
    const nowMs = request.now.getTime()
    const leaseMs = request.leaseUntil.getTime()
    const shard = this.#db.shardOf(outboxIdOf(pk))
    return {
      update:
        'SET #status = :publishing, #claimedBy = :worker, #claimedAt = :now, #leaseUntil = :lease,' +
        ' #dueAt = :lease, #gsi1pk = :g1pk, #gsi1sk = :g1sk, #gsi2pk = :g2pk, #gsi2sk = :g2sk' +
        ` REMOVE ${UNPARK_ATTRIBUTES}`,
      condition: CLAIMABLE,
      values: {
        ':publishing': S('publishing'),
        ':pending': S('pending'),
        ':worker': S(request.workerId),
        ':now': N(nowMs),
        ':lease': N(leaseMs),
        ':g1pk': S(claimPk('timed', shard)),
        ':g1sk': S(timeKey(leaseMs)),
        ':g2pk': S(outboxStatusPk('publishing', shard)),
        ':g2sk': S(timeKey(nowMs)),
      },
    }
  }

  protected async claimEvents(request: ClaimRequest): Promise<OutboxEvent[]> {
    const { now, limit } = request
    const nowMs = now.getTime()
    const claimed: Item[] = []
    const tried = new Set<string>()
    let lost = 0
    while (claimed.length < limit) {
      const want = limit - claimed.length
      // Candidates come from the eventually consistent claim index in enqueue order; the
      // index only proposes. The conditional UpdateItem is the truth: it takes the item
      // only if it is still pending and due, or publishing with an expired lease, at the
      // moment of the write. Of N racing claimers at most one condition holds, because the
      // winner's write makes leaseUntil > now. A loser simply moves on to other candidates.
      //
      // Uncontended (spread 0) a claim takes exactly the first `want` claimable events.
      // When this instance has been losing races, every claimer is chasing the same head
      // of the queue, so it picks `want` at random from a window 2^spread times larger:
      // claimers spread out instead of all losing the same writes (each costs a WCU).
      const window = Math.min(1_000, want * 2 ** this.#spread)
      const candidates = await this.#claimable(nowMs, window, tried, window > want)
      if (candidates.length === 0) break
      const chosen = candidates.length > want ? sample(candidates, want) : candidates
      // A keyed event after the first of its key (its index entry's seqKey names the event
      // before it) is claimed only as the head of its key: its item and its predecessor are
      // read first (strongly consistent, one BatchGetItem), then claimed in a transaction.
      const chained = chosen.flatMap((candidate) => {
        const prev = chainOf(requiredStr(candidate, 'seqKey'))?.prevEventId
        return prev === undefined ? [] : [requiredStr(candidate, 'pk'), outboxPk(prev)]
      })
      const reads = chained.length > 0 ? await this.#db.batchGet(chained) : new Map<string, Item>()
      const taken = await mapLimit(chosen, WRITE_CONCURRENCY, async (candidate) => {
        const pk = requiredStr(candidate, 'pk')
        tried.add(pk)
        if (chainOf(requiredStr(candidate, 'seqKey'))?.prevEventId === undefined) {
          // The item must have no predecessor either: an index entry may still show the
          // seqKey of a dead letter since chained again behind another event (see #rechain).
          const spec = this.#claimSpec(pk, request)
          return this.#db.update(pk, {
            ...spec,
            condition: `(${CLAIMABLE}) AND attribute_not_exists(#prevEventId)`,
          })
        }
        return this.#claimChained(reads.get(pk), reads, request)
      })
      for (const item of taken) if (item && item !== 'waits') claimed.push(item)
      const lostNow = taken.filter((item) => item === undefined).length
      if (lostNow > 0) this.#spread = Math.min(MAX_SPREAD, this.#spread + 1)
      lost += lostNow
    }
    if (lost === 0 && this.#spread > 0) this.#spread--
    return claimed.sort(bySeqKey).map(toOutboxEvent)
  }

  /**
   * Claims a keyed event that has a predecessor, only while that predecessor is released
   * (sent or deleted; or failed, when dead letters do not block): one TransactWriteItems of
   * the claiming update and a ConditionCheck on the predecessor, so the head check and the
   * claim happen at one instant, strongly consistent. The update also requires the item to
   * be the one read (chain, retries, availableAt), whose other attributes the claimed event
   * is built from. Answers the claimed item, `undefined` for a lost race, or `waits` when
   * the event is not the head of its key (then, if its predecessor holds the key, it is
   * parked behind it so that claims stop reading it).
   */
  async #claimChained(
    item: Item | undefined,
    reads: ReadonlyMap<string, Item>,
    request: ClaimRequest,
  ): Promise<Item | 'waits' | undefined> {
    const link = item && linkOfItem(item)
    if (!item || link?.prevEventId === undefined) return undefined
    const nowMs = request.now.getTime()
    const status = item.status?.S
    const claimable =
      (status === 'pending' && (num(item, 'availableAt') ?? Infinity) <= nowMs) ||
      (status === 'publishing' && (num(item, 'leaseUntil') ?? Infinity) <= nowMs)
    if (!claimable) return undefined
    const prevPk = outboxPk(link.prevEventId)
    const state = predecessorState(reads.get(prevPk), link)
    if (state === 'holding') {
      await this.#park(item, link, nowMs)
      return 'waits'
    }
    if (state === 'failed' && request.deadLettersBlockKeys) return 'waits'
    const pk = requiredStr(item, 'pk')
    const spec = this.#claimSpec(pk, request)
    const released = releasedCondition(link)
    // Going past a dead letter ('skip') marks it in the same instant, so that its redrive
    // knows this event may be in flight or sent already (see #rechain).
    const predecessor =
      state === 'failed'
        ? this.#db.updateAction(prevPk, skippedSpec(link))
        : this.#db.conditionCheckAction(prevPk, released.condition, released.values)
    const cancelled = await this.#db.transact([
      this.#db.updateAction(pk, {
        ...spec,
        condition: `(${CLAIMABLE}) AND #prevEventId = :prev AND #retryCount = :rc AND #availableAt = :av`,
        values: {
          ...spec.values,
          ':prev': S(link.prevEventId),
          ':rc': N(num(item, 'retryCount') ?? 0),
          ':av': N(num(item, 'availableAt') ?? 0),
        },
      }),
      predecessor,
    ])
    if (cancelled) return undefined
    const values = spec.values ?? {}
    const taken: Item = {
      ...item,
      status: S('publishing'),
      claimedBy: values[':worker'] as Item[string],
      claimedAt: N(nowMs),
      leaseUntil: values[':lease'] as Item[string],
    }
    return taken
  }

  /**
   * Parks a pending event behind its predecessor, which holds the key: in one transaction,
   * the event moves to its recheck slot and the predecessor (still holding, still its
   * predecessor) gets `nextEventId`, so the write that makes it sent or failed puts the
   * event back. If the predecessor moved on meanwhile nothing is written: the event stays.
   */
  async #park(item: Item, link: ChainLink, nowMs: number): Promise<void> {
    if (item.status?.S !== 'pending' || link.prevEventId === undefined) return
    const eventId = requiredStr(item, 'eventId')
    const availableAt = num(item, 'availableAt') ?? nowMs
    const parked = parkedAttributes(
      availableAt,
      nowMs,
      requiredStr(item, 'seqKey'),
      this.#db.shardOf(eventId),
    )
    const holding = holdingCondition(link)
    await this.#db.transact([
      this.#db.updateAction(requiredStr(item, 'pk'), {
        update: 'SET #gsi1pk = :g1pk, #gsi1sk = :g1sk, #dueAt = :due, #unparkPk = :upk, #unparkSk = :usk',
        condition: '#status = :pending AND #availableAt = :av AND #prevEventId = :prev',
        values: {
          ':g1pk': parked.gsi1pk as Item[string],
          ':g1sk': parked.gsi1sk as Item[string],
          ':due': parked.dueAt as Item[string],
          ':upk': parked.unparkPk as Item[string],
          ':usk': parked.unparkSk as Item[string],
          ':pending': S('pending'),
          ':av': N(availableAt),
          ':prev': S(link.prevEventId),
        },
      }),
      this.#db.updateAction(outboxPk(link.prevEventId), {
        update: 'SET #nextEventId = :next',
        condition: holding.condition,
        values: { ...holding.values, ':next': S(eventId) },
      }),
    ])
  }

  /**
   * After events left `pending`/`publishing` for `sent` or `failed`: puts back the events
   * parked behind them (`nextEventId` of the written items). Best effort by design: a lost
   * write here only delays that event to its recheck instant.
   */
  async #wakeSuccessors(items: readonly (Item | undefined)[]): Promise<void> {
    const next = items.flatMap((item) =>
      item?.nextEventId?.S === undefined ? [] : [[item.nextEventId.S, requiredStr(item, 'eventId')] as const],
    )
    await mapLimit(next, WRITE_CONCURRENCY, ([nextId, prevId]) =>
      this.#db.update(outboxPk(nextId), unparkSpec(prevId)),
    )
  }

  protected async renewLeases(
    eventIds: readonly string[],
    workerId: string,
    leaseUntil: Date,
  ): Promise<string[]> {
    const leaseMs = leaseUntil.getTime()
    const renewed = await mapLimit(eventIds, WRITE_CONCURRENCY, (id) =>
      this.#db.update(outboxPk(id), {
        update: 'SET #leaseUntil = :lease, #dueAt = :lease, #gsi1pk = :g1pk, #gsi1sk = :g1sk',
        condition: FENCE,
        values: {
          ':lease': N(leaseMs),
          ':publishing': S('publishing'),
          ':worker': S(workerId),
          ':g1pk': S(claimPk('timed', this.#db.shardOf(id))),
          ':g1sk': S(timeKey(leaseMs)),
        },
      }),
    )
    return eventIds.filter((_, index) => renewed[index] !== undefined)
  }

  protected async markSent(
    eventIds: readonly string[],
    workerId: string | undefined,
    now: Date,
  ): Promise<string[]> {
    // One conditional write per id (DynamoDB has no conditional batch); a false condition
    // is the answer "not applied" for that id, whether the lease was lost or the id is unknown.
    const applied = await mapLimit(eventIds, WRITE_CONCURRENCY, (id) =>
      this.#db.update(outboxPk(id), this.#fenced(this.#sentSpec(id, now.getTime()), workerId)),
    )
    await this.#wakeSuccessors(applied)
    return eventIds.filter((_, index) => applied[index] !== undefined)
  }

  protected async requeue(eventIds: readonly string[], now: Date): Promise<RequeueOutcome> {
    const nowMs = now.getTime()
    const outcomes = await mapLimit(eventIds, WRITE_CONCURRENCY, async (id) => {
      const shard = this.#db.shardOf(id)
      const pk = outboxPk(id)
      for (let attempt = 1; attempt <= MAX_KEY_ATTEMPTS; attempt++) {
        // A dead letter no later event of its key went past (or an unkeyed one) goes back
        // to its place: one write. A skipped one is chained again at the end of its key.
        const moved = await this.#db.update(pk, {
          update:
            'SET #status = :pending, #availableAt = :now, #dueAt = :now, #retryCount = :zero, #gsi1pk = :g1pk,' +
            ' #gsi1sk = #seqKey, #gsi2pk = :g2pk, #gsi2sk = #seqKey REMOVE #claimedBy, #leaseUntil, #expiresAt',
          condition: '#status = :failed AND attribute_not_exists(#skipped)',
          values: {
            ':pending': S('pending'),
            ':failed': S('failed'),
            ':now': N(nowMs),
            ':zero': N(0),
            ':g1pk': S(claimPk('ready', shard)),
            ':g2pk': S(outboxStatusPk('pending', shard)),
          },
        })
        if (moved) return 'moved'
        const item = await this.#db.get(pk)
        if (!item) return 'missing'
        if (item.status?.S !== 'failed') return 'other'
        if (item.skipped === undefined) continue
        const outcome = await this.#rechain(item, nowMs)
        if (outcome === 'moved') return 'moved'
        if (outcome === 'conflict') await backoff(Math.min(attempt, 6))
      }
      throw new DynamoDbFailure(
        'conflict',
        true,
        `dead letter ${pk} kept changing while being redriven; try again`,
      )
    })
    return {
      requeued: outcomes.filter((outcome) => outcome === 'moved').length,
      missing: eventIds.filter((_, index) => outcomes[index] === 'missing'),
    }
  }

  /**
   * Redrives a dead letter that a later event of its key went past (`keyedDeadLetters:
   * 'skip'`): that event may be in flight or sent, so the dead letter cannot be the head of
   * its key again (it would run beside it). It is chained at the end of its key instead, in
   * one TransactWriteItems with the key's counter (conditioned on the value read): its
   * position (`chainSeq`) is the counter's next value, a number no event gets as its keySeq
   * (a gap, which the contract allows), its predecessor the key's last event, and events
   * enqueued later chain after it. Its keySeq stays. The events that went past it see it
   * as released (no longer at the place they follow), so no two events wait for each other.
   */
  async #rechain(item: Item, nowMs: number): Promise<'moved' | 'changed' | 'conflict'> {
    const link = linkOfItem(item)
    if (!link) throw new TypeError(`stored item ${item.pk?.S ?? '?'} is skipped but has no ordering key`)
    const key = link.orderingKey
    const eventId = requiredStr(item, 'eventId')
    const counter = counterOf(await this.#db.get(keyCounterPk(key)))
    // Something after it went past it, so the counter names a later event.
    if (counter.lastEventId === undefined || counter.lastEventId === eventId)
      throw new TypeError(
        `the counter of ordering key ${JSON.stringify(key)} is behind its skipped event ${eventId}`,
      )
    const next: KeyCounter = { lastSeq: counter.lastSeq + 1, lastEventId: eventId }
    const oldSeqKey = requiredStr(item, 'seqKey')
    const seqKey = chainedOrderKey(orderKeyOf(oldSeqKey), {
      orderingKey: key,
      keySeq: next.lastSeq,
      prevEventId: counter.lastEventId,
    })
    const shard = this.#db.shardOf(eventId)
    const cancelled = await this.#db.transact([
      this.#db.updateAction(keyCounterPk(key), counterSpec(counter, next)),
      this.#db.updateAction(requiredStr(item, 'pk'), {
        update:
          'SET #status = :pending, #availableAt = :now, #dueAt = :now, #retryCount = :zero, #chainSeq = :pos,' +
          ' #prevEventId = :prev, #seqKey = :seq, #gsi1pk = :g1pk, #gsi1sk = :seq, #gsi2pk = :g2pk, #gsi2sk = :seq' +
          ' REMOVE #claimedBy, #leaseUntil, #expiresAt, #skipped, #nextEventId',
        condition: '#status = :failed AND attribute_exists(#skipped) AND #seqKey = :oldSeq',
        values: {
          ':pending': S('pending'),
          ':failed': S('failed'),
          ':now': N(nowMs),
          ':zero': N(0),
          ':pos': N(next.lastSeq),
          ':prev': S(counter.lastEventId),
          ':seq': S(seqKey),
          ':oldSeq': S(oldSeqKey),
          ':g1pk': S(claimPk('ready', shard)),
          ':g2pk': S(outboxStatusPk('pending', shard)),
        },
      }),
    ])
    if (!cancelled) {
      this.#remember(key, next)
      return 'moved'
    }
    if (cancelled.reasons.some((reason) => reason.code === 'ConditionalCheckFailed')) {
      this.#counters.delete(key)
      return 'changed'
    }
    if (cancelled.reasons.every((reason) => reason.code === 'None' || RETRY_CODES.has(reason.code)))
      return 'conflict'
    throw cancelled.error
  }

  protected async selectFailed(limit: number): Promise<OutboxEvent[]> {
    return (await this.#db.failedItems((shard) => outboxStatusPk('failed', shard), limit)).map(toOutboxEvent)
  }

  protected async read(eventId: string): Promise<OutboxEvent | null> {
    const item = await this.#db.get(outboxPk(eventId))
    return item ? toOutboxEvent(item) : null
  }
}
