import type { OutboxEvent } from '../outbox.js'

/** What a transport reports for one published event. */
export interface PublishReceipt {
  /**
   * The transport already had this event (JetStream answered `duplicate: true` inside its
   * dedup window): the earlier copy stands, so this counts as a success.
   */
  duplicate: boolean
  /** The stream that stored the message, when the transport knows. */
  stream?: string | undefined
  /** Its sequence in that stream. */
  seq?: number | undefined
}

/** The transport the relay publishes through (the NATS JetStream publisher, or a fake in tests). */
export interface OutboxPublisher {
  /**
   * Publishes one event and resolves once the transport has stored it (JetStream: the
   * PubAck arrived). Rejects when it was not stored; the relay then retries with backoff.
   * MUST be idempotent on `eventId` (JetStream: `Nats-Msg-Id`), because a relay that lost
   * its lease, or was killed after publishing but before marking, publishes again.
   */
  publish(event: OutboxEvent): Promise<PublishReceipt>
  /** Whether the transport is usable right now (for `health()`). */
  health?(): { ok: boolean; detail?: string | undefined }
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
