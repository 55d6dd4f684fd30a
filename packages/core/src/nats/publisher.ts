import { type JetStreamClient, type NatsConnection, NatsError } from 'nats'
import { ValidationError } from '../errors.js'
import type { OutboxEvent } from '../outbox.js'
import type { OutboxPublisher, PublishReceipt } from '../relay/types.js'
import { ConnectionState } from './connection-state.js'
import { natsHeadersFor } from './headers.js'

const COMPONENT = 'nats'
const encoder = new TextEncoder()

/** Why a publish failed. */
export type PublishFailure = 'no-stream' | 'timeout' | 'rejected'

/**
 * A publish that JetStream did not confirm. The relay retries it with backoff; `reason`
 * tells a missing stream (a deployment problem) from a transient timeout.
 */
export class JetStreamPublishError extends Error {
  readonly reason: PublishFailure
  readonly subject: string
  readonly eventId: string

  constructor(reason: PublishFailure, event: OutboxEvent, message: string, cause: unknown) {
    super(`[txbox] [${COMPONENT}] ${message}`, { cause })
    this.name = 'JetStreamPublishError'
    this.reason = reason
    this.subject = event.subject
    this.eventId = event.eventId
  }
}

/** Options of {@link createJetStreamPublisher}. */
export interface JetStreamPublisherOptions {
  /** A connection you opened with `connect()` from `nats`; the publisher never closes it. */
  connection: NatsConnection
  /** How long to wait for each PubAck (default 5,000 ms). */
  timeoutMs?: number | undefined
  /** Only accept the PubAck of this stream (JetStream `expect.streamName`). */
  expectStream?: string | undefined
  /** Publishes in flight at once in {@link JetStreamPublisher.publishMany} (default 256). */
  window?: number | undefined
}

/**
 * Publishes outbox events to JetStream: `Nats-Msg-Id` = `eventId` (so JetStream drops a
 * republish within the stream's `duplicate_window`), the event's headers as NATS headers
 * (see `encodeEventHeaders`), and the PubAck awaited: an event counts as published only
 * once a stream stored it. A duplicate ack is a success (the earlier copy stands).
 * Publishes are asynchronous: many can be in flight on the one connection.
 */
export class JetStreamPublisher implements OutboxPublisher {
  readonly #js: JetStreamClient
  readonly #timeoutMs: number
  readonly #expectStream: string | undefined
  readonly #window: number
  readonly #state: ConnectionState

  constructor(options: JetStreamPublisherOptions) {
    if (typeof options?.connection?.jetstream !== 'function')
      throw new ValidationError(COMPONENT, 'options.connection must be a NatsConnection from connect()')
    this.#js = options.connection.jetstream()
    this.#timeoutMs = options.timeoutMs ?? 5_000
    this.#expectStream = options.expectStream
    this.#window = options.window ?? 256
    if (!Number.isSafeInteger(this.#timeoutMs) || this.#timeoutMs < 1)
      throw new ValidationError(COMPONENT, `timeoutMs must be a positive integer; got ${this.#timeoutMs}`)
    if (!Number.isSafeInteger(this.#window) || this.#window < 1)
      throw new ValidationError(COMPONENT, `window must be a positive integer; got ${this.#window}`)
    this.#state = ConnectionState.of(options.connection)
  }

  async publish(event: OutboxEvent): Promise<PublishReceipt> {
    let ack: Awaited<ReturnType<JetStreamClient['publish']>>
    try {
      ack = await this.#js.publish(event.subject, encoder.encode(event.payload), {
        msgID: event.eventId,
        headers: natsHeadersFor(event.eventId, event.headers),
        timeout: this.#timeoutMs,
        ...(this.#expectStream === undefined ? {} : { expect: { streamName: this.#expectStream } }),
      })
    } catch (error) {
      throw publishError(event, error)
    }
    return { duplicate: ack.duplicate, stream: ack.stream, seq: ack.seq }
  }

  /**
   * Publishes many events with at most `window` PubAcks outstanding, and returns one
   * settled result per event, in order (a failure does not stop the others).
   */
  async publishMany(events: readonly OutboxEvent[]): Promise<PromiseSettledResult<PublishReceipt>[]> {
    const results: PromiseSettledResult<PublishReceipt>[] = new Array(events.length)
    let next = 0
    const lane = async (): Promise<void> => {
      for (let index = next++; index < events.length; index = next++) {
        const event = events[index] as OutboxEvent
        try {
          results[index] = { status: 'fulfilled', value: await this.publish(event) }
        } catch (error) {
          results[index] = { status: 'rejected', reason: error }
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(this.#window, events.length) }, lane))
    return results
  }

  health(): { ok: boolean; detail?: string | undefined } {
    return this.#state.health()
  }
}

const publishError = (event: OutboxEvent, error: unknown): JetStreamPublishError => {
  const code = error instanceof NatsError ? error.code : undefined
  if (code === '503') {
    // JetStream answers a publish to a subject no stream listens on with "no responders".
    return new JetStreamPublishError(
      'no-stream',
      event,
      `no JetStream stream matches subject ${JSON.stringify(event.subject)} (503 no responders): ` +
        'create a stream whose subjects include it',
      error,
    )
  }
  if (code === 'TIMEOUT')
    return new JetStreamPublishError(
      'timeout',
      event,
      `no PubAck for ${JSON.stringify(event.eventId)} in time`,
      error,
    )
  const detail = error instanceof Error ? error.message : String(error)
  return new JetStreamPublishError(
    'rejected',
    event,
    `publish of ${JSON.stringify(event.eventId)} failed: ${detail}`,
    error,
  )
}

/** Creates a {@link JetStreamPublisher}. */
export const createJetStreamPublisher = (options: JetStreamPublisherOptions): JetStreamPublisher =>
  new JetStreamPublisher(options)
