import type { InboxEvent, InboxStatus, OutboxEvent, OutboxStatus } from '@txbox/core'

/** An outbox row as SQLite returns it. */
export interface OutboxRow {
  seq: number
  event_id: string
  subject: string
  payload: string
  headers: string | null
  status: OutboxStatus
  enqueued_at: number
  sent_at: number | null
  error_message: string | null
  retry_count: number
  available_at: number
  claimed_at: number | null
  claimed_by: string | null
  lease_until: number | null
  ordering_key: string | null
  key_seq: number | null
}

/** An inbox row as SQLite returns it. */
export interface InboxRow {
  seq: number
  event_id: string
  subject: string
  payload: string
  headers: string | null
  stream: string | null
  stream_seq: number | null
  status: InboxStatus
  received_at: number
  processed_at: number | null
  deliveries: number
  error_message: string | null
  claimed_at: number | null
  claimed_by: string | null
  lease_until: number | null
}

/** `(status, count)` as the counting statements answer it. */
export interface StatusCountRow {
  status: string
  n: number
}

/** The nullable columns both tables share; NULL leaves the member absent, never `undefined`. */
type SharedColumns = Pick<
  OutboxRow,
  'headers' | 'error_message' | 'claimed_at' | 'claimed_by' | 'lease_until'
>

const withOptionalColumns = <Event extends OutboxEvent | InboxEvent>(
  event: Event,
  row: SharedColumns,
): Event => {
  if (row.headers !== null) event.headers = row.headers
  if (row.error_message !== null) event.errorMessage = row.error_message
  if (row.claimed_at !== null) event.claimedAt = new Date(row.claimed_at)
  if (row.claimed_by !== null) event.claimedBy = row.claimed_by
  if (row.lease_until !== null) event.leaseUntil = new Date(row.lease_until)
  return event
}

export const toOutboxEvent = (row: OutboxRow): OutboxEvent => {
  const event: OutboxEvent = {
    eventId: row.event_id,
    subject: row.subject,
    payload: row.payload,
    status: row.status,
    enqueuedAt: new Date(row.enqueued_at),
    retryCount: row.retry_count,
    availableAt: new Date(row.available_at),
  }
  if (row.sent_at !== null) event.sentAt = new Date(row.sent_at)
  if (row.ordering_key !== null) event.orderingKey = row.ordering_key
  if (row.key_seq !== null) event.keySeq = row.key_seq
  return withOptionalColumns(event, row)
}

/**
 * A row as the claim returns it (sql.ts CLAIMED_COLUMNS, in that order), read as an array:
 * the columns the claim does not set.
 */
export type ClaimedRow = [
  seq: number,
  eventId: string,
  subject: string,
  payload: string,
  headers: string | null,
  enqueuedAt: number,
  sentAt: number | null,
  errorMessage: string | null,
  retryCount: number,
  availableAt: number,
  orderingKey: string | null,
  keySeq: number | null,
]

/** What one claim wrote on every row it took (its status is 'publishing'). */
export interface ClaimWrite {
  readonly workerId: string
  readonly claimedAtMs: number
  readonly leaseUntilMs: number
}

/**
 * A claimed event from its {@link ClaimedRow} and what the claim wrote: the same event
 * {@link toOutboxEvent} makes of the whole row read after the claim.
 */
export const toClaimedEvent = (row: ClaimedRow, claim: ClaimWrite): OutboxEvent => {
  // Read by index, not destructured: this runs for every claimed event.
  const event: OutboxEvent = {
    eventId: row[1],
    subject: row[2],
    payload: row[3],
    status: 'publishing',
    enqueuedAt: new Date(row[5]),
    retryCount: row[8],
    availableAt: new Date(row[9]),
  }
  const sentAt = row[6]
  const orderingKey = row[10]
  const keySeq = row[11]
  const headers = row[4]
  const errorMessage = row[7]
  if (sentAt !== null) event.sentAt = new Date(sentAt)
  if (orderingKey !== null) event.orderingKey = orderingKey
  if (keySeq !== null) event.keySeq = keySeq
  if (headers !== null) event.headers = headers
  if (errorMessage !== null) event.errorMessage = errorMessage
  event.claimedAt = new Date(claim.claimedAtMs)
  event.claimedBy = claim.workerId
  event.leaseUntil = new Date(claim.leaseUntilMs)
  return event
}

export const toInboxEvent = (row: InboxRow): InboxEvent => {
  const event: InboxEvent = {
    eventId: row.event_id,
    subject: row.subject,
    payload: row.payload,
    status: row.status,
    receivedAt: new Date(row.received_at),
    deliveries: row.deliveries,
  }
  if (row.stream !== null && row.stream_seq !== null) {
    event.stream = row.stream
    event.streamSeq = row.stream_seq
  }
  if (row.processed_at !== null) event.processedAt = new Date(row.processed_at)
  return withOptionalColumns(event, row)
}

/** The counting statement's rows as the kernel's `(status, count)` pairs. */
export const statusCounts = (rows: readonly StatusCountRow[]): [string, number][] =>
  rows.map((row) => [row.status, row.n])
