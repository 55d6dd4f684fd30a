import type { OutboxEvent } from '../outbox.js'

/**
 * What the transport found when it compared a duplicate's stored message with the event:
 * `same` (the earlier copy is this event: delivered), `conflict` (another message holds
 * the event's id in the dedup window: this event was NOT delivered), `unverified` (the
 * stored message could not be read: treated as delivered, counted and logged).
 */
export type DuplicateCheck = 'same' | 'conflict' | 'unverified'

/** What a transport reports for one published event. */
export interface PublishReceipt {
  /**
   * The transport answered that it already had a message with this id (JetStream
   * `duplicate: true` inside its dedup window). Not proof of delivery on its own: see
   * `duplicateCheck`.
   */
  duplicate: boolean
  /** The stream that stored the message, when the transport knows. */
  stream?: string | undefined
  /** Its sequence in that stream (for a duplicate: the stored message's). */
  seq?: number | undefined
  /**
   * On a duplicate, the result of comparing the stored message with the event. A
   * transport that does not check leaves it out, and the relay counts the duplicate as
   * `unverified`.
   */
  duplicateCheck?: DuplicateCheck | undefined
  /** What differed, or why the stored message could not be read. */
  duplicateDetail?: string | undefined
}

/**
 * What the relay reads from an error thrown by `publish` (every field optional; a plain
 * `Error` is a retryable failure of reason `error`).
 */
export interface PublishErrorFields {
  /** A short failure class for metrics and logs (`timeout`, `no-stream`, ...). `timeout` turns health not-ok until a publish succeeds. */
  reason?: string | undefined
  /** Retrying cannot help (e.g. larger than the server accepts): the event is dead-lettered at once. */
  permanent?: boolean | undefined
}

/** The transport the relay publishes through (the NATS JetStream publisher, or a fake in tests). */
export interface OutboxPublisher {
  /**
   * Publishes one event and resolves once the transport has stored it (JetStream: the
   * PubAck arrived). Rejects when it was not stored; the relay then retries with backoff
   * (see {@link PublishErrorFields}). MUST be idempotent on `eventId` (JetStream:
   * `Nats-Msg-Id`), because a relay that lost its lease, or was killed after publishing
   * but before marking, publishes again.
   */
  publish(event: OutboxEvent): Promise<PublishReceipt>
  /** Whether the transport is usable right now (for `health()`). */
  health?(): { ok: boolean; detail?: string | undefined }
  /** The largest message the transport accepts in bytes (NATS: the server's `max_payload`), when known. */
  maxMessageBytes?(): number | undefined
}

/**
 * A wake-up hint: resolves when new events were probably enqueued, so the relay claims at
 * once instead of waiting for the next poll. A hint, not a queue: the relay keeps polling
 * as a fallback, so a lost notification only costs latency. The PostgreSQL adapter's
 * LISTEN/NOTIFY wakeup fits as is (`wakeup: store.createWakeup()`).
 */
export interface RelayWakeup {
  /** Resolves on a hint, or when `signal` aborts (the relay aborts it on poll timeout and on stop). */
  wait(signal: AbortSignal): Promise<unknown>
  /** Starts listening before the first claim, so an enqueue between that claim and the first wait is seen. */
  listen?(): Promise<unknown>
  /**
   * Releases what the hint holds (the PostgreSQL wakeup's LISTEN connection). The relay
   * calls it once from `stop()`, after its loop has ended, unless `ownsWakeup: false`.
   */
  close?(): unknown
}
