import type {
  InboxEvent,
  InboxParams,
  InboxStatus,
  NewOutboxEventParams,
  OutboxEvent,
  OutboxStatus,
} from '@txbox/core'
import { UnexpectedReplyError } from './errors.js'

/**
 * Redis strings are binary-safe and ioredis sends and decodes them as UTF-8, so payloads
 * and headers (U+0000, astral characters, 1 MiB) are stored as given: no text escape is
 * needed. Dates are stored as epoch milliseconds in decimal.
 */

/** A hash as HGETALL returns it inside a script reply: `[field, value, field, value, ...]`. */
export const fieldsOf = (reply: unknown): Map<string, string> => {
  if (!Array.isArray(reply)) throw new TypeError(`expected a flat hash reply, got ${typeof reply}`)
  const fields = new Map<string, string>()
  for (let i = 0; i + 1 < reply.length; i += 2) fields.set(String(reply[i]), String(reply[i + 1]))
  return fields
}

const required = (fields: ReadonlyMap<string, string>, name: string): string => {
  const value = fields.get(name)
  if (value === undefined) throw new TypeError(`stored event lacks the field ${name}`)
  return value
}

const date = (ms: string): Date => new Date(Number(ms))

const OUTBOX_STATUSES = new Set<string>(['pending', 'publishing', 'sent', 'failed'])
const INBOX_STATUSES = new Set<string>(['processing', 'processed', 'failed'])

/** Maps a stored outbox hash to the event. */
export const toOutboxEvent = (fields: ReadonlyMap<string, string>): OutboxEvent => {
  const status = required(fields, 'status')
  if (!OUTBOX_STATUSES.has(status)) throw new TypeError(`unexpected outbox status ${JSON.stringify(status)}`)
  const event: OutboxEvent = {
    eventId: required(fields, 'eventId'),
    subject: required(fields, 'subject'),
    payload: required(fields, 'payload'),
    status: status as OutboxStatus,
    enqueuedAt: date(required(fields, 'enqueuedAt')),
    retryCount: Number(required(fields, 'retryCount')),
    availableAt: date(required(fields, 'availableAt')),
  }
  const headers = fields.get('headers')
  if (headers !== undefined) event.headers = headers
  const sentAt = fields.get('sentAt')
  if (sentAt !== undefined) event.sentAt = date(sentAt)
  const errorMessage = fields.get('errorMessage')
  if (errorMessage !== undefined) event.errorMessage = errorMessage
  const claimedAt = fields.get('claimedAt')
  if (claimedAt !== undefined) event.claimedAt = date(claimedAt)
  const claimedBy = fields.get('claimedBy')
  if (claimedBy !== undefined) event.claimedBy = claimedBy
  const leaseUntil = fields.get('leaseUntil')
  if (leaseUntil !== undefined) event.leaseUntil = date(leaseUntil)
  return event
}

/** Maps a stored inbox hash to the event. */
export const toInboxEvent = (fields: ReadonlyMap<string, string>): InboxEvent => {
  const status = required(fields, 'status')
  if (!INBOX_STATUSES.has(status)) throw new TypeError(`unexpected inbox status ${JSON.stringify(status)}`)
  const event: InboxEvent = {
    eventId: required(fields, 'eventId'),
    subject: required(fields, 'subject'),
    payload: required(fields, 'payload'),
    status: status as InboxStatus,
    receivedAt: date(required(fields, 'receivedAt')),
    deliveries: Number(required(fields, 'deliveries')),
  }
  const headers = fields.get('headers')
  if (headers !== undefined) event.headers = headers
  const stream = fields.get('stream')
  const streamSeq = fields.get('streamSeq')
  if (stream !== undefined && streamSeq !== undefined) {
    event.stream = stream
    event.streamSeq = Number(streamSeq)
  }
  const processedAt = fields.get('processedAt')
  if (processedAt !== undefined) event.processedAt = date(processedAt)
  const errorMessage = fields.get('errorMessage')
  if (errorMessage !== undefined) event.errorMessage = errorMessage
  const claimedAt = fields.get('claimedAt')
  if (claimedAt !== undefined) event.claimedAt = date(claimedAt)
  const claimedBy = fields.get('claimedBy')
  if (claimedBy !== undefined) event.claimedBy = claimedBy
  const leaseUntil = fields.get('leaseUntil')
  if (leaseUntil !== undefined) event.leaseUntil = date(leaseUntil)
  return event
}

/** An HGETALL result from the client (an object; empty when the key does not exist). */
export const fieldsOfObject = (record: Record<string, string>): Map<string, string> | null => {
  const entries = Object.entries(record)
  return entries.length === 0 ? null : new Map(entries)
}

/** A list of flat hashes (a script returning several events). */
export const eventsOf = <E>(reply: unknown, map: (fields: ReadonlyMap<string, string>) => E): E[] => {
  if (!Array.isArray(reply)) throw new TypeError(`expected a list of events, got ${typeof reply}`)
  return reply.map((item) => map(fieldsOf(item)))
}

/** A script reply that is a list of ids. */
export const idsOf = (reply: unknown): string[] => {
  if (!Array.isArray(reply)) throw new UnexpectedReplyError('reply', reply)
  return reply.map(String)
}

/** A script reply that is a number (a count, or an outcome code). */
export const numberOf = (reply: unknown): number => {
  if (typeof reply !== 'number') throw new UnexpectedReplyError('reply', reply)
  return reply
}

/** One outbox event's ARGV in the enqueue script: id, subject, payload, hasHeaders, headers, availableAt. */
export const outboxEventArgs = (event: NewOutboxEventParams): (string | number)[] => [
  event.eventId,
  event.subject,
  event.payload,
  event.headers === undefined ? '0' : '1',
  event.headers ?? '',
  event.availableAt.getTime(),
]

/**
 * The ARGV head of the inbox findOrCreate and claim scripts (the layout of `insert()` in
 * scripts.ts): id, subject, payload, hasHeaders, headers, stream ('' = none), streamSeq, now.
 */
export const inboxEventArgs = (params: InboxParams, now: Date): (string | number)[] => [
  params.eventId,
  params.subject,
  params.payload,
  params.headers === undefined ? '0' : '1',
  params.headers ?? '',
  params.stream ?? '',
  params.streamSeq ?? 0,
  now.getTime(),
]
