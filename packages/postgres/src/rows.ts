import {
  decodeStoredText,
  type InboxEvent,
  type InboxStatus,
  type OutboxEvent,
  type OutboxStatus,
} from '@txbox/core'

/**
 * A timestamp column: epoch milliseconds from the adapter's own queries (see sql.ts), or a
 * Date from a plain `SELECT *` with pg's default parsers (the conformance oracle).
 */
export type StoredTime = Date | number | string

const toDate = (value: StoredTime): Date =>
  value instanceof Date ? new Date(value.getTime()) : new Date(Number(value))

/** An outbox row as read from the table (bigint as string or number). */
export interface OutboxRow {
  seq: string | number | bigint
  event_id: string
  subject: string
  payload: string
  headers: string | null
  status: string
  enqueued_at: StoredTime
  sent_at: StoredTime | null
  error_message: string | null
  retry_count: number | string
  available_at: StoredTime
  claimed_at: StoredTime | null
  claimed_by: string | null
  lease_until: StoredTime | null
  /** NULL on unkeyed events (and every row stored before migration 0004). */
  ordering_key: string | null
  key_seq: string | number | bigint | null
}

/** An inbox row as read from the table. */
export interface InboxRow {
  seq: string | number | bigint
  event_id: string
  subject: string
  payload: string
  headers: string | null
  stream: string | null
  stream_seq: string | number | bigint | null
  status: string
  received_at: StoredTime
  processed_at: StoredTime | null
  deliveries: number | string
  error_message: string | null
  claimed_at: StoredTime | null
  claimed_by: string | null
  lease_until: StoredTime | null
}

/**
 * Maps a stored outbox row to the contract's shape: text columns are decoded from the
 * lossless U+0000 escape, NULL columns become absent properties.
 */
export const outboxEventFromRow = (row: OutboxRow): OutboxEvent => {
  const event: OutboxEvent = {
    eventId: decodeStoredText(row.event_id),
    subject: decodeStoredText(row.subject),
    payload: decodeStoredText(row.payload),
    status: row.status as OutboxStatus,
    enqueuedAt: toDate(row.enqueued_at),
    retryCount: Number(row.retry_count),
    availableAt: toDate(row.available_at),
  }
  if (row.headers !== null) event.headers = decodeStoredText(row.headers)
  if (row.sent_at !== null) event.sentAt = toDate(row.sent_at)
  if (row.error_message !== null) event.errorMessage = decodeStoredText(row.error_message)
  if (row.claimed_at !== null) event.claimedAt = toDate(row.claimed_at)
  if (row.claimed_by !== null) event.claimedBy = decodeStoredText(row.claimed_by)
  if (row.lease_until !== null) event.leaseUntil = toDate(row.lease_until)
  // Stored exactly as given (a valid key holds no U+0000, so it needs no escape).
  if (row.ordering_key !== null) event.orderingKey = row.ordering_key
  if (row.key_seq !== null) event.keySeq = Number(row.key_seq)
  return event
}

/** Maps a stored inbox row to the contract's shape. */
export const inboxEventFromRow = (row: InboxRow): InboxEvent => {
  const event: InboxEvent = {
    eventId: decodeStoredText(row.event_id),
    subject: decodeStoredText(row.subject),
    payload: decodeStoredText(row.payload),
    status: row.status as InboxStatus,
    receivedAt: toDate(row.received_at),
    deliveries: Number(row.deliveries),
  }
  if (row.headers !== null) event.headers = decodeStoredText(row.headers)
  if (row.stream !== null) event.stream = decodeStoredText(row.stream)
  if (row.stream_seq !== null) event.streamSeq = Number(row.stream_seq)
  if (row.processed_at !== null) event.processedAt = toDate(row.processed_at)
  if (row.error_message !== null) event.errorMessage = decodeStoredText(row.error_message)
  if (row.claimed_at !== null) event.claimedAt = toDate(row.claimed_at)
  if (row.claimed_by !== null) event.claimedBy = decodeStoredText(row.claimed_by)
  if (row.lease_until !== null) event.leaseUntil = toDate(row.lease_until)
  return event
}
