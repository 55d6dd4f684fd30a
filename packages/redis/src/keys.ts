/**
 * The key layout of one store. Every key starts with `txbox:{<keyPrefix>}:`: the braces are
 * a Redis Cluster hash tag, so all keys of a store hash to one slot. That is what lets one
 * Lua script touch the indexes and the per-event hashes of a store on a Cluster, and what
 * lets a caller's `MULTI` hold the enqueue together with its own writes (which must then
 * use the same hash tag).
 *
 * Outbox (`txbox:{p}:outbox:`):
 * - `e:<eventId>`  hash: the event (dates as epoch milliseconds, `seq` the enqueue order)
 * - `seq`          string: the INCR counter giving each event its enqueue sequence
 * - `ready`        zset of `pending` events that are due, scored by seq (claim order)
 * - `delayed`      zset of `pending` events not due when written or retried, scored by availableAt
 * - `leases`       zset of `publishing` events holding a lease, scored by leaseUntil
 * - `publishing`   zset of `publishing` events, scored by claimedAt (resetStale)
 * - `sent`         zset of `sent` events, scored by sentAt (cleanup)
 * - `failed`       zset of `failed` events, scored by seq (dead letters, oldest first)
 * - `counts`       hash: status -> number of events (a field is removed at zero)
 *
 * Ordering keys (layout 3; an event without a key is in none of these):
 * - `keyseq`          hash: ordering key -> the last keySeq given (never deleted: a key's
 *                     sequence does not restart after cleanup)
 * - `kl:<key>`        zset of the key's `pending` and `publishing` events, scored by keySeq:
 *                     its lowest member is the key's head, the only one of them a claim takes.
 *                     A publishing event is scored -keySeq where a pending one could come in
 *                     below it (a redrive, markAsPublishing), so it stays the head
 * - `kf:<key>`        zset of the key's `failed` events, scored by keySeq (they hold the key
 *                     for a claim with keyedDeadLetters 'block')
 * - `blocked`         zset of `pending`, due heads with a dead letter below them, scored by
 *                     seq: only a 'skip' claim looks here
 * - `parked`          zset of `pending` keyed events that are not their key's head, scored by
 *                     seq: no claim looks here; findPending does, and a head leaving its key
 *                     moves the next one to `ready`, `delayed` or `blocked`
 *   A keyed head that is `pending` is in `ready` or `delayed` (as an unkeyed event) or
 *   `blocked`; so `ready` holds only events a claim may take, and a claim's work stays
 *   proportional to its batch however long a key's backlog is.
 *
 * Inbox (`txbox:{p}:inbox:`):
 * - `e:<eventId>`             hash: the event
 * - `a:<streamSeq>:<stream>`  string: version 1's alias of a JetStream position; never read
 *                             now, deleted by cleanup together with the event it names
 * - `seq`                     string: INCR counter (breaks receivedAt ties)
 * - `processing`              zset scored by claim time (claimedAt, else receivedAt)
 * - `processed`               zset scored by processedAt (cleanup)
 * - `failed`                  zset, all scores 0, members `<receivedAt:15><seq:16><eventId>`
 *                             so that the lexical order is receivedAt then seq
 * - `counts`                  hash: status -> number of events
 *
 * `txbox:{p}:schema` holds the layout version `migrate()` recorded (see migrate.ts).
 */

/** The default `keyPrefix`. */
export const DEFAULT_KEY_PREFIX = 'default'

/** `txbox:{<keyPrefix>}`: the start of every key of one store. */
export const storeBase = (keyPrefix: string): string => `txbox:{${keyPrefix}}`

/** The key recording the layout version: the migration history, one number. */
export const schemaKey = (keyPrefix: string): string => `${storeBase(keyPrefix)}:schema`

/** The keys of the outbox. `indexKeys` is the fixed head of every outbox script's KEYS. */
export interface OutboxKeys {
  /** Prefix of every event hash: `<eventPrefix><eventId>`. */
  readonly eventPrefix: string
  readonly ready: string
  readonly delayed: string
  readonly leases: string
  readonly publishing: string
  readonly sent: string
  readonly failed: string
  readonly counts: string
  readonly seq: string
  readonly keySeqs: string
  /** Prefix of a key's live events zset: `<liveKeyPrefix><orderingKey>`. */
  readonly livePrefix: string
  /** Prefix of a key's dead letters zset: `<deadKeyPrefix><orderingKey>`. */
  readonly deadPrefix: string
  readonly blocked: string
  readonly parked: string
  /** KEYS[1..14] of every outbox script, in the order the Lua prelude expects. */
  readonly indexKeys: readonly string[]
  event(eventId: string): string
}

export const outboxKeys = (keyPrefix: string): OutboxKeys => {
  const base = `${storeBase(keyPrefix)}:outbox:`
  const eventPrefix = `${base}e:`
  const keys = {
    eventPrefix,
    ready: `${base}ready`,
    delayed: `${base}delayed`,
    leases: `${base}leases`,
    publishing: `${base}publishing`,
    sent: `${base}sent`,
    failed: `${base}failed`,
    counts: `${base}counts`,
    seq: `${base}seq`,
    keySeqs: `${base}keyseq`,
    livePrefix: `${base}kl:`,
    deadPrefix: `${base}kf:`,
    blocked: `${base}blocked`,
    parked: `${base}parked`,
  }
  return {
    ...keys,
    indexKeys: Object.freeze([
      keys.eventPrefix,
      keys.ready,
      keys.delayed,
      keys.leases,
      keys.publishing,
      keys.sent,
      keys.failed,
      keys.counts,
      keys.seq,
      keys.keySeqs,
      keys.livePrefix,
      keys.deadPrefix,
      keys.blocked,
      keys.parked,
    ]),
    event: (eventId) => `${eventPrefix}${eventId}`,
  }
}

/** The keys of the inbox. `indexKeys` is the fixed head of every inbox script's KEYS. */
export interface InboxKeys {
  readonly eventPrefix: string
  /** Version 1's `(stream, streamSeq)` aliases: only cleanup touches them, to delete them. */
  readonly aliasPrefix: string
  readonly processing: string
  readonly processed: string
  readonly failed: string
  readonly counts: string
  readonly seq: string
  /** KEYS[1..7] of every inbox script, in the order the Lua prelude expects. */
  readonly indexKeys: readonly string[]
  event(eventId: string): string
}

export const inboxKeys = (keyPrefix: string): InboxKeys => {
  const base = `${storeBase(keyPrefix)}:inbox:`
  const eventPrefix = `${base}e:`
  const aliasPrefix = `${base}a:`
  const keys = {
    eventPrefix,
    aliasPrefix,
    processing: `${base}processing`,
    processed: `${base}processed`,
    failed: `${base}failed`,
    counts: `${base}counts`,
    seq: `${base}seq`,
  }
  return {
    ...keys,
    indexKeys: Object.freeze([
      keys.eventPrefix,
      keys.aliasPrefix,
      keys.processing,
      keys.processed,
      keys.failed,
      keys.counts,
      keys.seq,
    ]),
    event: (eventId) => `${eventPrefix}${eventId}`,
  }
}
