/** Where an outbox event is in its life: waiting, claimed by a relay, published, or dead-lettered. */
export type OutboxStatus = 'pending' | 'publishing' | 'sent' | 'failed'

/** Every outbox status, in life-cycle order. */
export const OUTBOX_STATUSES: readonly OutboxStatus[] = Object.freeze([
  'pending',
  'publishing',
  'sent',
  'failed',
])

/** An event stored in the outbox. */
export interface OutboxEvent {
  /** The caller's idempotency key; also the JetStream `Nats-Msg-Id`. */
  eventId: string
  /** The NATS subject to publish to. */
  subject: string
  /** The message body, stored and returned exactly as given. */
  payload: string
  /** Optional headers (the caller's own encoding, typically JSON), returned exactly as given. */
  headers?: string
  status: OutboxStatus
  /** When `findOrCreate` stored the event. */
  enqueuedAt: Date
  /** When the event was marked `sent`. */
  sentAt?: Date
  /** The last failure's message. */
  errorMessage?: string
  /** Failed attempts so far. */
  retryCount: number
  /** Not claimable before this (backoff, delayed publish). */
  availableAt: Date
  /** When the event last entered `publishing`. */
  claimedAt?: Date
  /** The worker holding the lease. */
  claimedBy?: string
  /** When the lease expires; after it the event may be claimed again. */
  leaseUntil?: Date
  /**
   * The caller's ordering key (e.g. the aggregate id): events of one key are published in
   * their `keySeq` order, one at a time (docs/CONTRACT.md, "Ordering keys").
   */
  orderingKey?: string
  /**
   * The event's position among the events of its `orderingKey`: assigned by the store when
   * the event is stored, strictly increasing per key in commit order, never reused for the
   * key (gaps are possible). Absent for an event without a key, and on the provisional event
   * that a store deciding at commit (a MULTI, the memory store) returns inside a transaction.
   */
  keySeq?: number
}

/** What `findOrCreate` stores. */
export interface EnqueueParams {
  eventId: string
  subject: string
  payload: string
  headers?: string | undefined
  /** Not claimable before this instant (delayed publish). Defaults to now. */
  availableAt?: Date | undefined
  /**
   * Publish this event after every earlier-committed event with the same key, and never two
   * of them at once (e.g. the aggregate id). Carried verbatim as a NATS header value: a
   * non-empty string of at most 255 UTF-16 code units, no edge whitespace, no control
   * character. Case-sensitive. A store that does not declare `orderingKeys` refuses it.
   */
  orderingKey?: string | undefined
}

/** Options of a write that may join the caller's database transaction. */
export interface WriteOptions<Tx> {
  /**
   * The database's own transaction handle. The write commits or rolls back with the
   * caller's transaction; rolling back MUST leave no trace of the event. Without it, inside
   * `store.transaction` the write joins that transaction; elsewhere it is autocommitted.
   */
  tx?: Tx | undefined
}

/** Fencing: a write that names a worker applies only while that worker holds the claim. */
export interface FenceOptions {
  /** When given, the write applies only if this worker still holds the claim, else `LeaseLostError`. */
  workerId?: string | undefined
}

/** Options of `claim`. */
export interface ClaimOptions {
  /** At most this many events (1..10000, default 100). */
  limit?: number | undefined
  /** How long the claim is held before another worker may take the event. */
  leaseMs: number
  /** Who holds the claim. */
  workerId: string
  /**
   * What a dead-lettered (`failed`) event with an ordering key does to the later events of
   * its key: `block` (default) holds them until it is redriven (`requeueFailed`) and sent;
   * `skip` lets them go on (the dead letter, if redriven, is then published out of order).
   */
  keyedDeadLetters?: KeyedDeadLetters | undefined
  /**
   * The most events of one ordering key this claim may return (an integer 1..`limit`,
   * default 1): the head of the key and its next unsent events in `keySeq` order while each
   * is claimable, all held by this claimer (docs/CONTRACT.md, "Key runs"). Above 1 only on a
   * store whose capabilities declare `keyRuns`; others refuse it with `ValidationError`.
   */
  keyRun?: number | undefined
}

/** Options of `release`. */
export interface ReleaseOptions {
  /** The worker that holds the claims: only its `publishing` events are released. */
  workerId: string
}

/** See {@link ClaimOptions.keyedDeadLetters}. */
export type KeyedDeadLetters = 'block' | 'skip'

/** Options of `renewLease`. */
export interface RenewLeaseOptions {
  workerId: string
  leaseMs: number
}

/** Options of `retryLater`. */
export interface RetryLaterOptions extends FenceOptions {
  errorMessage: string
  /** The event is due again `delayMs` after now (persisted backoff). */
  delayMs: number
}

/** A count for every outbox status, zeros included. */
export type OutboxCounts = Record<OutboxStatus, number>

/**
 * The outbox: the reference interface's methods with the same names and meanings, plus
 * the operations that make it correct under concurrency.
 */
export interface OutboxRepository<Tx = never> {
  /**
   * Inserts a `pending` event (`retryCount` 0, `availableAt` = `params.availableAt ?? now`),
   * or returns the stored one unchanged if `eventId` exists: first write wins, later
   * payloads are ignored. Atomic: concurrent calls with one id store one row and all return
   * the same `enqueuedAt`.
   */
  findOrCreate(params: EnqueueParams, options?: WriteOptions<Tx>): Promise<OutboxEvent>

  /** `findOrCreate` for each event, in one round trip where the store allows; results in input order. */
  findOrCreateMany(params: readonly EnqueueParams[], options?: WriteOptions<Tx>): Promise<OutboxEvent[]>

  /** Sets status `publishing` and `claimedAt` = now. Unknown id: `EventNotFoundError`. */
  markAsPublishing(eventId: string): Promise<void>

  /**
   * Sets status `sent`, `sentAt` = now, and clears the lease. With `workerId`, only if that
   * worker still holds the claim, else `LeaseLostError`. Unknown id: `EventNotFoundError`.
   */
  markAsSent(eventId: string, options?: FenceOptions): Promise<void>

  /**
   * Dead-letters the event: status `failed`, `errorMessage`, `retryCount` + 1, lease cleared.
   * Same fencing as `markAsSent`. Unknown id: `EventNotFoundError`.
   */
  markAsFailed(eventId: string, errorMessage: string, options?: FenceOptions): Promise<void>

  /** Due (`availableAt <= now`) `pending` events in enqueue order, at most `limit`. Read-only. */
  findPending(options?: { limit?: number | undefined }): Promise<OutboxEvent[]>

  /**
   * Deletes `sent` events with `sentAt < now - olderThanDays` and returns how many. Never
   * touches other statuses. Works in bounded batches (no statement over 10,000 rows).
   */
  cleanup(olderThanDays: number): Promise<number>

  /**
   * Moves `publishing` events with `claimedAt < now - staleMinutes` back to `pending`
   * (lease cleared) and returns how many. Keyed on claim time, never on `enqueuedAt`.
   */
  resetStale(staleMinutes: number): Promise<number>

  /** A count for all four statuses, zeros included. */
  getCountByStatus(): Promise<OutboxCounts>

  /**
   * Atomically moves up to `limit` claimable events to `publishing` with `claimedBy`,
   * `claimedAt` = now and `leaseUntil` = now + `leaseMs`, and returns them in enqueue order.
   * Claimable: `pending` and due, or `publishing` with `leaseUntil <= now`. Two concurrent
   * claims never return the same event, and no database transaction stays open afterwards.
   */
  claim(options: ClaimOptions): Promise<OutboxEvent[]>

  /**
   * Extends the leases still held by `workerId` to now + `leaseMs` and returns the ids
   * renewed. A worker MUST stop working on an event whose id is missing from the result.
   */
  renewLease(eventIds: readonly string[], options: RenewLeaseOptions): Promise<string[]>

  /**
   * `markAsSent` for many events, in one round trip where the store allows. Returns the
   * ids not applied: leases lost (with `workerId`) and ids that are not stored.
   */
  markManyAsSent(eventIds: readonly string[], options?: FenceOptions): Promise<string[]>

  /**
   * Back to `pending`, `retryCount` + 1, `errorMessage`, `availableAt` = now + `delayMs`,
   * lease cleared. Same fencing as `markAsSent`. Unknown id: `EventNotFoundError`.
   */
  retryLater(eventId: string, options: RetryLaterOptions): Promise<void>

  /** Dead letters (`failed`), oldest enqueued first, at most `limit`. */
  getFailedEvents(limit?: number): Promise<OutboxEvent[]>

  /**
   * Redrive: moves `failed` events back to `pending`, due now, `retryCount` 0, and returns
   * how many moved. Ids in another status are left alone and not counted; an id that is not
   * stored raises `EventNotFoundError` (after the others have been requeued).
   */
  requeueFailed(eventIds: readonly string[]): Promise<number>

  /** The stored event, or `null`. */
  get(eventId: string): Promise<OutboxEvent | null>

  /**
   * True when `claim` takes `keyRun` above 1 and `release` exists (the store's
   * `capabilities.keyRuns`): the relay reads it to claim runs of a key.
   */
  readonly keyRuns?: boolean | undefined

  /**
   * Gives back claims never acted on (the rest of a key's run after a failed publish): each
   * event `publishing` and held by `workerId` goes back to `pending`, lease cleared,
   * `availableAt`, `retryCount` and `errorMessage` unchanged, so it is claimable again at
   * once in its key's order. Returns the ids not applied (another worker holds them, or they
   * are not stored), as `markManyAsSent`. Present on stores that declare `keyRuns`.
   */
  release?(eventIds: readonly string[], options: ReleaseOptions): Promise<string[]>
}
