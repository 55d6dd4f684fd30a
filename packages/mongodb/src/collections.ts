import {
  decodeStoredText,
  encodeStoredText,
  type InboxEvent,
  type InboxStatus,
  type OutboxEvent,
  type OutboxStatus,
} from '@txbox/core'
import type { IndexDescription } from 'mongodb'

/** The adapter name in every error message. */
export const ADAPTER = 'mongodb'

/**
 * The schema version `migrate()` records in `<prefix>meta`. Version 2 dropped version 1's
 * `<prefix>inbox_streams` alias collection: the inbox keys on the event id alone.
 */
export const SCHEMA_VERSION = 2

/**
 * The largest event accepted (payload + headers + subject, UTF-8 bytes): a BSON document
 * holds at most 16 MiB, and the rest is left for the other fields.
 */
export const MAX_EVENT_BYTES = 16_000_000

/** The default `collectionPrefix`. */
export const DEFAULT_COLLECTION_PREFIX = 'txbox_'

/** The collections of one store, all named from one validated prefix. */
export interface CollectionNames {
  /** Outbox events, `_id` = the encoded event id. */
  readonly outbox: string
  /** Inbox events, `_id` = the encoded event id. */
  readonly inbox: string
  /**
   * Version 1's `(stream, streamSeq)` aliases of inbox events, which merged a new event at a
   * sequence a re-created JetStream stream reuses into an old one. Never read or written
   * now; `migrate()` drops it.
   */
  readonly inboxStreams: string
  /** Short-lived write locks, used only where the server's updates are not atomic (FerretDB v1). */
  readonly locks: string
  /** The schema version document. */
  readonly meta: string
}

export const collectionNames = (prefix: string): CollectionNames => ({
  outbox: `${prefix}outbox`,
  inbox: `${prefix}inbox`,
  inboxStreams: `${prefix}inbox_streams`,
  locks: `${prefix}locks`,
  meta: `${prefix}meta`,
})

/**
 * The indexes `migrate()` creates. None is partial (FerretDB v1 rejects partial indexes);
 * every query of the repositories starts with an equality on `status`, so each has a prefix
 * to use: claim and findPending (`status`, `availableAt` / `leaseUntil`, ordered by `seq`),
 * cleanup (`status`, `sentAt` / `processedAt`), resetStale (`status`, `claimedAt`), counts
 * (`status`).
 */
export const INDEXES: Readonly<Record<'outbox' | 'inbox', IndexDescription[]>> = {
  outbox: [
    { key: { status: 1, seq: 1 }, name: 'txbox_status_seq' },
    { key: { status: 1, availableAt: 1 }, name: 'txbox_status_available_at' },
    { key: { status: 1, leaseUntil: 1 }, name: 'txbox_status_lease_until' },
    { key: { status: 1, claimedAt: 1 }, name: 'txbox_status_claimed_at' },
    { key: { status: 1, sentAt: 1 }, name: 'txbox_status_sent_at' },
  ],
  inbox: [
    { key: { status: 1, receivedAt: 1, seq: 1 }, name: 'txbox_status_received_at_seq' },
    { key: { status: 1, claimedAt: 1 }, name: 'txbox_status_claimed_at' },
    { key: { status: 1, processedAt: 1 }, name: 'txbox_status_processed_at' },
  ],
}

/**
 * An outbox document. Every string the caller gave goes through the core lossless text
 * codec, because FerretDB rejects U+0000 in strings; text without U+0000 / U+0001 (every
 * JSON document) is stored unchanged, so the same layout serves MongoDB too.
 */
export interface OutboxDocument {
  _id: string
  subject: string
  payload: string
  headers?: string
  status: OutboxStatus
  enqueuedAt: Date
  sentAt?: Date
  errorMessage?: string
  retryCount: number
  availableAt: Date
  claimedAt?: Date
  claimedBy?: string
  leaseUntil?: Date
  /** The enqueue-order key: see {@link SequenceClock}. */
  seq: string
  /** A fresh random token on every write: the compare-and-set version of the document. */
  rev: string
}

/** An inbox document; same text encoding as {@link OutboxDocument}. */
export interface InboxDocument {
  _id: string
  subject: string
  payload: string
  headers?: string
  stream?: string
  streamSeq?: number
  status: InboxStatus
  receivedAt: Date
  processedAt?: Date
  deliveries: number
  errorMessage?: string
  claimedAt?: Date
  claimedBy?: string
  leaseUntil?: Date
  seq: string
  rev: string
}

export interface LockDocument {
  _id: string
  /** Wall-clock time the lock was taken, to recover a lock whose holder died. */
  at: Date
}

export interface MetaDocument {
  _id: string
  version: number
  migratedAt: Date
}

export const encode = encodeStoredText
export const decode = decodeStoredText

/** Maps a stored outbox document to the event, decoding the text codec; absent fields stay absent. */
export const toOutboxEvent = (doc: OutboxDocument): OutboxEvent => {
  const event: OutboxEvent = {
    eventId: decode(doc._id),
    subject: decode(doc.subject),
    payload: decode(doc.payload),
    status: doc.status,
    enqueuedAt: doc.enqueuedAt,
    retryCount: doc.retryCount,
    availableAt: doc.availableAt,
  }
  if (doc.headers !== undefined && doc.headers !== null) event.headers = decode(doc.headers)
  if (doc.sentAt instanceof Date) event.sentAt = doc.sentAt
  if (typeof doc.errorMessage === 'string') event.errorMessage = decode(doc.errorMessage)
  if (doc.claimedAt instanceof Date) event.claimedAt = doc.claimedAt
  if (typeof doc.claimedBy === 'string') event.claimedBy = decode(doc.claimedBy)
  if (doc.leaseUntil instanceof Date) event.leaseUntil = doc.leaseUntil
  return event
}

/** Maps a stored inbox document to the event, decoding the text codec. */
export const toInboxEvent = (doc: InboxDocument): InboxEvent => {
  const event: InboxEvent = {
    eventId: decode(doc._id),
    subject: decode(doc.subject),
    payload: decode(doc.payload),
    status: doc.status,
    receivedAt: doc.receivedAt,
    deliveries: doc.deliveries,
  }
  if (doc.headers !== undefined && doc.headers !== null) event.headers = decode(doc.headers)
  if (typeof doc.stream === 'string') event.stream = decode(doc.stream)
  if (typeof doc.streamSeq === 'number') event.streamSeq = doc.streamSeq
  if (doc.processedAt instanceof Date) event.processedAt = doc.processedAt
  if (typeof doc.errorMessage === 'string') event.errorMessage = decode(doc.errorMessage)
  if (doc.claimedAt instanceof Date) event.claimedAt = doc.claimedAt
  if (typeof doc.claimedBy === 'string') event.claimedBy = decode(doc.claimedBy)
  if (doc.leaseUntil instanceof Date) event.leaseUntil = doc.leaseUntil
  return event
}

/**
 * The enqueue-order key of one repository instance: a hybrid logical clock rendered as a
 * fixed-width string (`<ms, 15 digits>.<counter, 9 digits>`, so string order is key order).
 * The millisecond part follows the injected clock but never goes back, and the counter
 * orders calls within one millisecond; so events of one instance sort in call order even
 * when the clock is frozen or steps back, and events of different instances sort by time
 * (docs/CONTRACT.md §4), however many are enqueued per millisecond.
 */
export class SequenceClock {
  #ms = 0
  #counter = 0

  next(now: Date): string {
    const ms = now.getTime()
    if (ms > this.#ms) {
      this.#ms = ms
      this.#counter = 0
    } else {
      this.#counter += 1
    }
    return `${String(this.#ms).padStart(15, '0')}.${String(this.#counter).padStart(9, '0')}`
  }
}
