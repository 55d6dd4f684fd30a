import {
  decodeStoredText,
  type InboxEvent,
  type InboxStatus,
  type OutboxEvent,
  type OutboxStatus,
} from '@txbox/core'

/** An outbox row as pg returns it (timestamptz as Date, bigint as string). */
export interface OutboxRow {
  seq: string
  event_id: string
  subject: string
  payload: string
  headers: string | null
  status: string
  enqueued_at: Date
  sent_at: Date | null
  error_message: string | null
  retry_count: number
  available_at: Date
  claimed_at: Date | null
  claimed_by: string | null
  lease_until: Date | null
}

/** An inbox row as pg returns it. */
export interface InboxRow {
  seq: string
  event_id: string
  subject: string
  payload: string
  headers: string | null
  stream: string | null
  stream_seq: string | null
  status: string
  received_at: Date
  processed_at: Date | null
  deliveries: number
  error_message: string | null
  claimed_at: Date | null
  claimed_by: string | null
  lease_until: Date | null
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
    enqueuedAt: row.enqueued_at,
    retryCount: row.retry_count,
    availableAt: row.available_at,
  }
  if (row.headers !== null) event.headers = decodeStoredText(row.headers)
  if (row.sent_at !== null) event.sentAt = row.sent_at
  if (row.error_message !== null) event.errorMessage = decodeStoredText(row.error_message)
  if (row.claimed_at !== null) event.claimedAt = row.claimed_at
  if (row.claimed_by !== null) event.claimedBy = decodeStoredText(row.claimed_by)
  if (row.lease_until !== null) event.leaseUntil = row.lease_until
  return event
}

/** Maps a stored inbox row to the contract's shape. */
export const inboxEventFromRow = (row: InboxRow): InboxEvent => {
  const event: InboxEvent = {
    eventId: decodeStoredText(row.event_id),
    subject: decodeStoredText(row.subject),
    payload: decodeStoredText(row.payload),
    status: row.status as InboxStatus,
    receivedAt: row.received_at,
    deliveries: row.deliveries,
  }
  if (row.headers !== null) event.headers = decodeStoredText(row.headers)
  if (row.stream !== null) event.stream = decodeStoredText(row.stream)
  if (row.stream_seq !== null) event.streamSeq = Number(row.stream_seq)
  if (row.processed_at !== null) event.processedAt = row.processed_at
  if (row.error_message !== null) event.errorMessage = decodeStoredText(row.error_message)
  if (row.claimed_at !== null) event.claimedAt = row.claimed_at
  if (row.claimed_by !== null) event.claimedBy = decodeStoredText(row.claimed_by)
  if (row.lease_until !== null) event.leaseUntil = row.lease_until
  return event
}
