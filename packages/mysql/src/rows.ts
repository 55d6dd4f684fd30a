import type { InboxEvent, InboxParams, InboxStatus, OutboxEvent, OutboxStatus } from '@txbox/core'
import type { Row } from './client.js'

/**
 * A Date as a `DATETIME(3)` literal in UTC. Sent as a string, the value never passes through
 * mysql2's `timezone` option nor the session `time_zone` (DATETIME has no time zone), so it
 * is stored as UTC whatever the pool and server are configured with.
 */
export const toDateTime = (date: Date): string => {
  const iso = date.toISOString()
  // Years outside 0000..9999 get a sign and six digits: DATETIME cannot hold them, and the
  // server's own error (a StorageError) says so.
  return iso.length === 24 ? `${iso.slice(0, 10)} ${iso.slice(11, 23)}` : iso
}

/** A `DATETIME(3)` string read with `dateStrings` back to a Date, as UTC. */
export const fromDateTime = (value: unknown): Date => {
  const text = String(value)
  const date = new Date(`${text.replace(' ', 'T')}Z`)
  if (Number.isNaN(date.getTime())) throw new TypeError(`unreadable DATETIME value: ${JSON.stringify(text)}`)
  return date
}

const optionalDate = (value: unknown): Date | undefined =>
  value === null || value === undefined ? undefined : fromDateTime(value)
const optionalText = (value: unknown): string | undefined =>
  value === null || value === undefined ? undefined : String(value)

/** A stored outbox row as an event (optional fields absent, not undefined). */
export const toOutboxEvent = (row: Row): OutboxEvent => {
  const event: OutboxEvent = {
    eventId: String(row.event_id),
    subject: String(row.subject),
    payload: String(row.payload),
    status: String(row.status) as OutboxStatus,
    enqueuedAt: fromDateTime(row.enqueued_at),
    retryCount: Number(row.retry_count),
    availableAt: fromDateTime(row.available_at),
  }
  const headers = optionalText(row.headers)
  if (headers !== undefined) event.headers = headers
  const sentAt = optionalDate(row.sent_at)
  if (sentAt !== undefined) event.sentAt = sentAt
  const errorMessage = optionalText(row.error_message)
  if (errorMessage !== undefined) event.errorMessage = errorMessage
  const claimedAt = optionalDate(row.claimed_at)
  if (claimedAt !== undefined) event.claimedAt = claimedAt
  const claimedBy = optionalText(row.claimed_by)
  if (claimedBy !== undefined) event.claimedBy = claimedBy
  const leaseUntil = optionalDate(row.lease_until)
  if (leaseUntil !== undefined) event.leaseUntil = leaseUntil
  const orderingKey = optionalText(row.ordering_key)
  if (orderingKey !== undefined) {
    event.orderingKey = orderingKey
    event.keySeq = Number(row.key_seq)
  }
  return event
}

/** A stored inbox row as an event. */
export const toInboxEvent = (row: Row): InboxEvent => {
  const event: InboxEvent = {
    eventId: String(row.event_id),
    subject: String(row.subject),
    payload: String(row.payload),
    status: String(row.status) as InboxStatus,
    receivedAt: fromDateTime(row.received_at),
    deliveries: Number(row.deliveries),
  }
  const headers = optionalText(row.headers)
  if (headers !== undefined) event.headers = headers
  if (row.stream !== null && row.stream !== undefined) {
    event.stream = String(row.stream)
    event.streamSeq = Number(row.stream_seq)
  }
  const processedAt = optionalDate(row.processed_at)
  if (processedAt !== undefined) event.processedAt = processedAt
  const errorMessage = optionalText(row.error_message)
  if (errorMessage !== undefined) event.errorMessage = errorMessage
  const claimedAt = optionalDate(row.claimed_at)
  if (claimedAt !== undefined) event.claimedAt = claimedAt
  const claimedBy = optionalText(row.claimed_by)
  if (claimedBy !== undefined) event.claimedBy = claimedBy
  const leaseUntil = optionalDate(row.lease_until)
  if (leaseUntil !== undefined) event.leaseUntil = leaseUntil
  return event
}

/**
 * The delivery an inbox INSERT of `params` at `now` stored (`processing`, one delivery, with
 * the claim's lease when there is one), as reading the new row back would answer it.
 */
export const insertedInboxEvent = (
  params: InboxParams,
  now: Date,
  claim: { readonly workerId: string; readonly leaseUntil: Date } | undefined,
): InboxEvent => {
  const event: InboxEvent = {
    eventId: params.eventId,
    subject: params.subject,
    payload: params.payload,
    status: 'processing',
    receivedAt: new Date(now.getTime()),
    deliveries: 1,
  }
  if (params.headers !== undefined) event.headers = params.headers
  if (params.stream !== undefined && params.streamSeq !== undefined) {
    event.stream = params.stream
    event.streamSeq = params.streamSeq
  }
  if (claim !== undefined) {
    event.claimedAt = new Date(now.getTime())
    event.claimedBy = claim.workerId
    event.leaseUntil = new Date(claim.leaseUntil.getTime())
  }
  return event
}

/** Compares two BIGINT seq strings numerically. */
export const compareSeq = (a: string, b: string): number =>
  a.length - b.length || (a < b ? -1 : a > b ? 1 : 0)
