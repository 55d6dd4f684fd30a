import {
  decodeStoredText,
  type EnqueueParams,
  encodeStoredText,
  type InboxEvent,
  type InboxStatus,
  type OutboxEvent,
  type OutboxStatus,
  PayloadTooLargeError,
  utf8Bytes,
} from '@txbox/core'
import { ADAPTER } from './errors.js'

/**
 * The largest event accepted (payload + headers + subject, UTF-8 bytes): a BSON document
 * holds at most 16 MiB, and the rest is left for the other fields.
 */
export const MAX_EVENT_BYTES = 16_000_000

/**
 * Refuses an event whose document BSON could not hold, with the sizes, instead of a driver
 * error. The subject counts too: it is stored beside the payload and headers (and the inbox
 * takes whatever NATS delivered, which no `maxEventBytes` bounds).
 */
export const assertDocumentFits = (
  event: Pick<EnqueueParams, 'eventId' | 'subject' | 'payload' | 'headers'>,
): void => {
  const bytes = utf8Bytes(event.payload) + utf8Bytes(event.headers ?? '') + utf8Bytes(event.subject)
  if (bytes > MAX_EVENT_BYTES) throw new PayloadTooLargeError(ADAPTER, event.eventId, bytes, MAX_EVENT_BYTES)
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
  /** The caller's ordering key, text-encoded; absent on an event without one. */
  orderingKey?: string
  /**
   * The event's position in its key (see key-sequences.ts); absent on an event without a
   * key, and for a moment on a keyed event that is stored but not numbered yet.
   */
  keySeq?: number
  /**
   * Set by `requeueFailed` on a keyed dead letter: the `keySeq` it had, while it waits to be
   * placed in its key again (see redrives.ts), and after; a numbering decision that would
   * give it this number or a lower one was made before the redrive and is not applied.
   */
  redrivenFrom?: number
  /**
   * `true` on a keyed event from its insert until the write that marks it `sent` (which
   * removes the field): every event that may hold its key (`pending`, `publishing`,
   * `failed`) has it, so the claim's head check reads all holders of a key with one query
   * (one snapshot on FerretDB, where a query per status missed an event that moved between
   * two of them). Absent on unkeyed events and on sent ones.
   */
  holding?: true
  /** The enqueue-order key: see {@link SequenceClock}. */
  seq: string
  /** A fresh random token on every write: the compare-and-set version of the document. */
  rev: string
}

/** A key's counter in `<prefix>outbox_keys`: the last `keySeq` given to an event of the key. */
export interface OutboxKeyDocument {
  /** The text-encoded ordering key. */
  _id: string
  lastSeq: number
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

export const encode = encodeStoredText
export const decode = decodeStoredText

/** The fields outbox and inbox documents share: the caller's text and the claim. */
type CommonDocument = Pick<
  OutboxDocument,
  'headers' | 'errorMessage' | 'claimedAt' | 'claimedBy' | 'leaseUntil'
>
type CommonEvent = Pick<OutboxEvent, 'headers' | 'errorMessage' | 'claimedAt' | 'claimedBy' | 'leaseUntil'>

/** Copies the shared optional fields that are present, decoding text; absent fields stay absent. */
const copyCommon = (doc: CommonDocument, event: CommonEvent): void => {
  if (doc.headers !== undefined && doc.headers !== null) event.headers = decode(doc.headers)
  if (typeof doc.errorMessage === 'string') event.errorMessage = decode(doc.errorMessage)
  if (doc.claimedAt instanceof Date) event.claimedAt = doc.claimedAt
  if (typeof doc.claimedBy === 'string') event.claimedBy = decode(doc.claimedBy)
  if (doc.leaseUntil instanceof Date) event.leaseUntil = doc.leaseUntil
}

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
  copyCommon(doc, event)
  if (doc.sentAt instanceof Date) event.sentAt = doc.sentAt
  if (typeof doc.orderingKey === 'string') {
    event.orderingKey = decode(doc.orderingKey)
    if (typeof doc.keySeq === 'number') event.keySeq = doc.keySeq
  }
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
  copyCommon(doc, event)
  if (typeof doc.stream === 'string') event.stream = decode(doc.stream)
  if (typeof doc.streamSeq === 'number') event.streamSeq = doc.streamSeq
  if (doc.processedAt instanceof Date) event.processedAt = doc.processedAt
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
