/** Where a received event is: being handled, handled, or failed. */
export type InboxStatus = 'processing' | 'processed' | 'failed'

/** Every inbox status. */
export const INBOX_STATUSES: readonly InboxStatus[] = Object.freeze(['processing', 'processed', 'failed'])

/** An event recorded by the inbox. */
export interface InboxEvent {
  eventId: string
  subject: string
  payload: string
  headers?: string
  /** The JetStream stream the message came from. */
  stream?: string
  /** The message's sequence in that stream. */
  streamSeq?: number
  status: InboxStatus
  receivedAt: Date
  processedAt?: Date
  /** How many times this event was delivered (every `findOrCreate` or `claim` that saw it). */
  deliveries: number
  errorMessage?: string
  claimedAt?: Date
  claimedBy?: string
  leaseUntil?: Date
}

/** What the inbox records of a received message. */
export interface InboxParams {
  eventId: string
  subject: string
  payload: string
  headers?: string | undefined
  /**
   * With `streamSeq`: where JetStream delivered the message. Recorded, never an identity: a
   * stream re-created under its name restarts at sequence 1.
   */
  stream?: string | undefined
  streamSeq?: number | undefined
}

/** Options of the inbox `claim`. */
export interface InboxClaimOptions {
  leaseMs: number
  workerId: string
}

/** The result of the inbox `claim`. */
export interface InboxClaimResult {
  /** The stored event after the claim. */
  event: InboxEvent
  /** True for exactly one caller: run the handler. False: a duplicate, ack it without running. */
  shouldProcess: boolean
}

/**
 * Fencing of the inbox marks: a mark that names a worker applies only while that worker holds
 * the claim (the event is `processing` and `claimedBy` is that worker; a lease that expired
 * but was not taken over still counts, as in the outbox), else `LeaseLostError`.
 */
export interface InboxFenceOptions {
  /** The worker that claimed the event (`claim`'s `workerId`). */
  workerId?: string | undefined
}

/** Options of `markAsProcessed`. */
export interface InboxProcessedOptions<Tx = never> extends InboxFenceOptions {
  /** The caller's transaction: the mark commits or rolls back with the handler's writes. */
  tx?: Tx | undefined
}

/** A count for every inbox status, zeros included. */
export type InboxCounts = Record<InboxStatus, number>

/** The inbox: records each received event so that it is processed once. */
export interface InboxRepository<Tx = never> {
  /**
   * Inserts a `processing` event with `deliveries` 1, or returns the stored one with
   * `deliveries` + 1 (atomic). The `eventId` alone is the identity: `(stream, streamSeq)` is
   * recorded, never used to merge two different `eventId`s (a JetStream stream deleted and
   * re-created under the same name restarts its sequence at 1). A redelivery of a stored id
   * at a new position keeps the position recorded first.
   */
  findOrCreate(params: InboxParams): Promise<InboxEvent>

  /**
   * Sets status `processed`, `processedAt` = now; the lease is cleared. With `tx` (or, without
   * it, inside `store.transaction`), commits or rolls back with the caller's handler writes.
   * With `workerId`, only while that worker holds the claim, else `LeaseLostError` (with `tx`,
   * thrown inside the transaction, so rolling it back undoes the handler's writes: another
   * worker took the event over). Unknown id: `EventNotFoundError`.
   */
  markAsProcessed(eventId: string, options?: InboxProcessedOptions<Tx>): Promise<void>

  /**
   * Sets status `failed` and `errorMessage`; the lease is cleared. With `workerId`, only while
   * that worker holds the claim, else `LeaseLostError`. Without it, a `processed` event is
   * final: the call changes nothing. Unknown id: `EventNotFoundError`.
   */
  markAsFailed(eventId: string, errorMessage: string, options?: InboxFenceOptions): Promise<void>

  /** True only for a `processed` event. */
  isProcessed(eventId: string): Promise<boolean>

  /** Deletes `processed` events with `processedAt < now - olderThanDays`; returns how many. */
  cleanup(olderThanDays: number): Promise<number>

  /**
   * Moves `processing` events whose claim time (`claimedAt ?? receivedAt`) is older than
   * `now - staleMinutes` to `failed` with `errorMessage` 'Processing timeout'; returns how many.
   */
  resetStale(staleMinutes: number): Promise<number>

  /** A count for all three statuses, zeros included. */
  getCountByStatus(): Promise<InboxCounts>

  /** Failed events, oldest received first, at most `limit`. */
  getFailedEvents(limit?: number): Promise<InboxEvent[]>

  /**
   * Atomic begin. Exactly one of N concurrent callers with the same event gets
   * `shouldProcess: true` when the event is new, `failed`, or `processing` with an expired
   * lease; that caller now holds the lease (`claimedBy`, `claimedAt` = now, `leaseUntil` =
   * now + `leaseMs`). `processed`, or a live lease, gives `false` to everyone. Every call
   * counts a delivery.
   */
  claim(params: InboxParams, options: InboxClaimOptions): Promise<InboxClaimResult>

  /** The stored event, or `null`. */
  get(eventId: string): Promise<InboxEvent | null>
}

/** The message inbox `resetStale` stores on an event that timed out. */
export const PROCESSING_TIMEOUT_MESSAGE = 'Processing timeout'
