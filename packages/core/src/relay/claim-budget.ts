import { natsMessageBytes } from '../nats-message.js'
import type { OutboxEvent } from '../outbox.js'

/**
 * Bytes of events one claim may hold (default 128 MiB, so the default 100-event batch
 * still fits when every event is at the 1 MiB default limit). Measured on one batch claimed
 * from PostgreSQL and published to JetStream (ASCII payloads of ~1 MiB): the heap grew by
 * 1.0x the batch bytes and the RSS by 2.5-2.8x at its peak (64 events: +178 MiB RSS,
 * 100 events: +246 MiB), from the driver's buffers, the strings and their UTF-8 copies.
 * Text outside Latin-1 takes 2 bytes per character in the heap.
 */
export const DEFAULT_MAX_BATCH_BYTES = 134_217_728

/**
 * An event's size as the relay bounds it: its NATS message bytes (payload + header block),
 * the same measure every store applies with `maxEventBytes` at enqueue, so an event a store
 * accepted under the same limit is never refused here.
 */
export const eventBytes = (event: OutboxEvent): number => natsMessageBytes(event)

/**
 * How many events the relay asks for per claim: bounded by count (`batchSize`) and by
 * bytes (`maxBatchBytes / maxEventBytes` events of the largest allowed size).
 *
 * Events stored before a size limit existed can be far larger than `maxEventBytes`, and
 * a claim of many of them can exhaust the heap before the relay sees a single one. So
 * the limit starts at 1 (after every start, including the restart that follows such a
 * crash), doubles after each full batch that stayed within `maxBatchBytes`, and shrinks
 * (down to 1) after a batch that did not: the relay always makes progress.
 */
export class ClaimBudget {
  /** The largest claim: min(batchSize, max(1, floor(maxBatchBytes / maxEventBytes))). */
  readonly maxLimit: number
  readonly maxBatchBytes: number
  #limit: number

  constructor(options: { batchSize: number; maxBatchBytes: number; maxEventBytes: number; rampUp: boolean }) {
    this.maxLimit = Math.min(
      options.batchSize,
      Math.max(1, Math.floor(options.maxBatchBytes / options.maxEventBytes)),
    )
    this.maxBatchBytes = options.maxBatchBytes
    this.#limit = options.rampUp ? 1 : this.maxLimit
  }

  /** The limit of the next claim. */
  get limit(): number {
    return this.#limit
  }

  /** Adjusts the next limit after a claim of `claimed` events holding `bytes` bytes. */
  record(claimed: number, bytes: number): void {
    if (bytes > this.maxBatchBytes) {
      const fitting = Math.floor((claimed * this.maxBatchBytes) / bytes)
      this.#limit = Math.max(1, Math.min(Math.floor(this.#limit / 2), fitting))
    } else if (claimed >= this.#limit) {
      this.#limit = Math.min(this.maxLimit, this.#limit * 2)
    }
  }
}
