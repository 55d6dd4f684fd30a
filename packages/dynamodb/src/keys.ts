import type { InboxStatus, OutboxStatus } from '@txbox/core'

/**
 * Key layout of the single txbox table. Outbox events, inbox events and inbox
 * `(stream, streamSeq)` aliases live side by side, told apart by the prefix of `pk`, so one
 * table per store serves both repositories (one `migrate`, one TTL setting, one bill).
 */

/** `pk` of an outbox event. */
export const outboxPk = (eventId: string): string => `ob#e#${eventId}`
/** `pk` of an inbox event. */
export const inboxPk = (eventId: string): string => `ib#e#${eventId}`
/**
 * `pk` of the alias item that reserves an inbox `(stream, streamSeq)`. The sequence is the
 * last segment and always numeric, so a `#` inside a stream name cannot make two aliases
 * collide.
 */
export const aliasPk = (stream: string, streamSeq: number): string => `ib#s#${stream}#${streamSeq}`

/** Prefixes, for raw scans (the conformance oracle counts by them). */
export const OUTBOX_EVENT_PREFIX = 'ob#e#'
export const INBOX_EVENT_PREFIX = 'ib#e#'

/** `pk` of the item that records the schema version `migrate()` applied. */
export const SCHEMA_PK = 'txbox#schema'

/** The sparse, sharded "due" index: pending events and leased publishing events. */
export const DUE_INDEX = 'gsi1'
/** The sparse, sharded "by status" index: every event under `<store>#<status>#<shard>`. */
export const STATUS_INDEX = 'gsi2'

/** `gsi1pk` of an outbox event that can become claimable. */
export const duePk = (shard: number): string => `ob#due#${shard}`
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
 * instance (CONTRACT §4); sharing it between instances keeps that true and costs nothing.
 */
let sequence = 0
export const nextSequence = (): number => {
  sequence += 1
  return sequence
}
