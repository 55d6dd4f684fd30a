import type { Clock } from '../clock.js'
import type { InboxParams } from '../inbox.js'
import type { EnqueueParams } from '../outbox.js'
import type { AmbientTransactions } from '../transactions/ambient-transactions.js'
import type { ClassifyStorageError } from './storage-failure.js'

/**
 * The most rows one sweep step (`cleanup`, `resetStale`) touches: no statement, script or
 * batch of requests holds more than this many rows.
 */
export const SWEEP_BATCH = 10_000

/** What a repository kernel needs from its adapter besides the primitives. */
export interface RepositorySettings<Tx> {
  /** The adapter's name: `[txbox] [<adapter>]` in every error. */
  readonly adapter: string
  readonly clock: Clock
  /** The largest event accepted, as NATS message bytes, already resolved (`resolveMaxEventBytes`). */
  readonly maxEventBytes: number
  /** Maps driver errors to a reason (default: every error is `unknown`, not retryable). */
  readonly classify?: ClassifyStorageError | undefined
  /**
   * Checks the caller's `{ tx }` before any I/O and answers the handle to use (e.g. refuses a
   * pool where a client is required). Default: the handle as given.
   */
  readonly transaction?: ((tx: Tx | undefined) => Tx | undefined) | undefined
  /**
   * The store's `store.transaction` runner: a write that takes `{ tx }` and is called without
   * one, inside `store.transaction`, joins that transaction. An explicit `{ tx }` wins.
   */
  readonly ambient?: AmbientTransactions<Tx> | undefined
  /** Rows per sweep step; default {@link SWEEP_BATCH}. */
  readonly sweepBatch?: number | undefined
  /**
   * True when the store implements ordering keys (stores `orderingKey`, assigns `keySeq`,
   * claims heads of keys only). Without it an event with an `orderingKey` is refused with
   * `ValidationError` before any write, so no key is ever silently dropped.
   */
  readonly orderingKeys?: boolean | undefined
  /**
   * True when the store's claim honours `ClaimRequest.keyRun` above 1 and it implements
   * `releaseHeld`. Without it `keyRun > 1` and `release` are refused with `ValidationError`.
   */
  readonly keyRuns?: boolean | undefined
}

/** An event to insert: valid, its `availableAt` resolved (`params.availableAt ?? now`). */
export type NewOutboxEventParams = EnqueueParams & { readonly availableAt: Date }

/** What a fenced outbox write sets besides clearing the lease. */
export type OutboxChange =
  | { readonly status: 'sent'; readonly sentAt: Date }
  /** Dead-lettered: `errorMessage`, `retryCount` + 1. */
  | { readonly status: 'failed'; readonly errorMessage: string }
  /**
   * Retried later: `errorMessage`, `retryCount` + 1, due at `availableAt`. `now` is the instant
   * of the call, for a store that files due and delayed events apart (`availableAt <= now`: due at once).
   */
  | {
      readonly status: 'pending'
      readonly errorMessage: string
      readonly availableAt: Date
      readonly now: Date
    }

/** The outcome of a fenced write: applied, the id is not stored, or the worker lost the claim. */
export type FencedOutcome = 'applied' | 'missing' | 'lost'

/** A valid claim: move up to `limit` claimable events to `publishing` for `workerId` until `leaseUntil`. */
export interface ClaimRequest {
  readonly now: Date
  readonly leaseUntil: Date
  readonly workerId: string
  readonly limit: number
  /**
   * Ordering keys: an event with an `orderingKey` is claimable only while no event of its
   * key with a lower `keySeq` is `pending` or `publishing`, nor `failed` when this is true
   * (`keyedDeadLetters: 'block'`, the default).
   */
  readonly deadLettersBlockKeys: boolean
  /**
   * The most events of one key to return (1: the head only, today's rule). Above 1 only on
   * a store declaring `keyRuns`: the head, then the key's next unsent events in `keySeq`
   * order while each is claimable (pending and due; publishing with an expired lease),
   * stopping at the first that is not.
   */
  readonly keyRun: number
}

/** What a redrive did: how many `failed` events moved, and the ids that are not stored. */
export interface RequeueOutcome {
  readonly requeued: number
  readonly missing: Iterable<string>
}

/** `(status, count)` pairs as a GROUP BY answers them; absent statuses count zero. */
export type StatusCountRows = Iterable<readonly [string, number | bigint | string]>

/** A valid inbox claim. */
export interface InboxClaimRequest {
  readonly params: InboxParams
  readonly now: Date
  readonly workerId: string
  readonly leaseUntil: Date
}
