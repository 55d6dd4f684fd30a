import type { InboxStatus, OutboxStatus } from '@txbox/core'

/**
 * Key layout of the single txbox table. Outbox events and inbox events live side by side,
 * told apart by the prefix of `pk`, so one table per store serves both repositories (one
 * `migrate`, one TTL setting, one bill).
 */

/** `pk` of an outbox event. */
export const outboxPk = (eventId: string): string => `ob#e#${eventId}`
/** The event id of an outbox event's `pk`. */
export const outboxIdOf = (pk: string): string => pk.slice('ob#e#'.length)
/** `pk` of an inbox event. */
export const inboxPk = (eventId: string): string => `ib#e#${eventId}`
/** The event id of an inbox event's `pk`. */
export const inboxIdOf = (pk: string): string => pk.slice('ib#e#'.length)

/**
 * `pk` of an ordering key's counter item: `{ lastSeq, lastEventId }`, the last `keySeq` given
 * to the key and the event that holds it. Its own key space, never deleted, so a key's
 * sequence survives `cleanup` (docs/CONTRACT.md §2 "Ordering keys").
 */
export const keyCounterPk = (orderingKey: string): string => `ob#k#${orderingKey}`
export const KEY_COUNTER_PREFIX = 'ob#k#'

/** Prefixes, for raw scans (the conformance oracle counts by them). */
export const OUTBOX_EVENT_PREFIX = 'ob#e#'
export const INBOX_EVENT_PREFIX = 'ib#e#'

/** `pk` of the item that records the schema version `migrate()` applied. */
export const SCHEMA_PK = 'txbox#schema'

/**
 * The sparse, sharded claim index (`gsi1`). An event that can become claimable is in
 * exactly one of two partitions of its shard; every other event is absent from the index:
 * - `ob#ready#<shard>`: pending and already due when written, sorted by enqueue order;
 * - `ob#timed#<shard>`: claimable from a known instant on, sorted by that instant: pending
 *   with a later availableAt (delayed publish, backoff), or publishing with a lease
 *   (leaseUntil: an expired lease is reclaimable).
 * A claim reads the head of `ready` and only the due key range of `timed`, so live leases
 * and backoff never sit in front of claimable events.
 */
export const CLAIM_INDEX = 'gsi1'
/** The sparse, sharded "by status" index: every event under `<store>#<status>#<shard>`. */
export const STATUS_INDEX = 'gsi2'

/** The partitions of the claim index. */
export type ClaimPartition = 'ready' | 'timed'
/** `gsi1pk` of an outbox event that is claimable now or later. */
export const claimPk = (partition: ClaimPartition, shard: number): string => `ob#${partition}#${shard}`
/** `gsi2pk` of an outbox event. */
export const outboxStatusPk = (status: OutboxStatus, shard: number): string => `ob#${status}#${shard}`
/** `gsi2pk` of an inbox event. */
export const inboxStatusPk = (status: InboxStatus, shard: number): string => `ib#${status}#${shard}`

/**
 * A fixed-width decimal form of an epoch-ms instant, so that string order is time order in
 * a sort key. Instants before 1970 sort as 1970: they only ever appear in test data and
 * still compare exactly through the numeric attributes.
 */
export const timeKey = (ms: number): string => Math.max(0, Math.trunc(ms)).toString().padStart(16, '0')

/** `timeKey` followed by a sequence number: the enqueue-order sort key. */
export const orderKey = (ms: number, seq: number): string =>
  `${timeKey(ms)}#${seq.toString().padStart(12, '0')}`

/** Length of an `orderKey`: the fixed-width part of every `seqKey`. */
const ORDER_KEY_LENGTH = orderKey(0, 0).length

/**
 * Where a keyed event sits in its key's chain: the key, its position, the event before it.
 * The position is the event's `keySeq`, except for a dead letter redriven after later events
 * of its key went past it (`keyedDeadLetters: 'skip'`): that one is chained again at the end
 * of its key, at a position taken from the key's counter (its `chainSeq`; its `keySeq` stays).
 */
export interface ChainLink {
  orderingKey: string
  /** The chain position: `chainSeq` when the event was chained again, else its `keySeq`. */
  keySeq: number
  /** The event at position `keySeq - 1` of the same key; absent for the key's first event. */
  prevEventId: string | undefined
}

/**
 * The `seqKey` of a keyed event: its `orderKey` followed by its chain link. The claim index
 * projects only `dueAt`, `seqKey` and `status` (a GSI's projection cannot change once
 * created), so the link rides in `seqKey` for the claim to read from the index which
 * candidate is the lowest of its key and which event it waits for. The fixed-width
 * `orderKey` prefix still decides the order; the suffix only breaks ties between processes,
 * which are unspecified anyway. Immutable, like the attributes it copies.
 */
export const chainedOrderKey = (order: string, link: ChainLink): string =>
  `${order}#${JSON.stringify([link.orderingKey, link.keySeq, link.prevEventId ?? null])}`

/** The `orderKey` at the start of a `seqKey` (the part that decides the enqueue order). */
export const orderKeyOf = (seqKey: string): string => seqKey.slice(0, ORDER_KEY_LENGTH)

/** The chain link a `seqKey` carries; undefined for an unkeyed event's. */
export const chainOf = (seqKey: string): ChainLink | undefined => {
  if (seqKey.length <= ORDER_KEY_LENGTH) return undefined
  const [orderingKey, keySeq, prevEventId] = JSON.parse(seqKey.slice(ORDER_KEY_LENGTH + 1)) as [
    string,
    number,
    string | null,
  ]
  return { orderingKey, keySeq, prevEventId: prevEventId ?? undefined }
}

/**
 * The shard of an event: FNV-1a over the id's UTF-16 code units. Stable across processes
 * and releases (it decides which index partition an event lives in).
 */
export const shardOf = (eventId: string, shards: number): number => {
  let hash = 0x811c9dc5
  for (let index = 0; index < eventId.length; index++) {
    hash ^= eventId.charCodeAt(index)
    hash = Math.imul(hash, 0x01000193)
  }
  return (hash >>> 0) % shards
}

/**
 * A process-wide counter behind every order key. It only has to grow within one repository
 * instance (docs/CONTRACT.md §4); sharing it between instances keeps that true and costs nothing.
 */
let sequence = 0
export const nextSequence = (): number => {
  sequence += 1
  return sequence
}
