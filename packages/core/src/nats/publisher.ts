import type { JetStreamManager, NatsConnection } from 'nats'
import { ValidationError } from '../errors.js'
import { natsMessageBytes } from '../nats-message.js'
import type { OutboxEvent } from '../outbox.js'
import type { DuplicateCheck, OutboxPublisher, PublishReceipt } from '../relay/types.js'
import { MAX_TIMER_MS, Validator } from '../validation.js'
import { ConnectionState } from './connection-state.js'
import { MSG_ID, natsHeadersFor } from './headers.js'
import { type PubAck, PubAckCorrelator, PubAckFailure } from './pub-acks.js'

const COMPONENT = 'nats'
/** JetStream refuses the message unless the stream that would store it has this name. */
const EXPECTED_STREAM = 'Nats-Expected-Stream'
const encoder = new TextEncoder()

/** Why a publish failed. `too-large` is permanent: no retry can publish it. */
export type PublishFailure = 'no-stream' | 'timeout' | 'rejected' | 'too-large'

/**
 * A publish that JetStream did not confirm. The relay retries it with backoff; `reason`
 * tells a missing stream (a deployment problem) from a transient timeout.
 */
export class JetStreamPublishError extends Error {
  readonly reason: PublishFailure
  readonly subject: string
  readonly eventId: string
  /** Retrying cannot help (the message is over the server's `max_payload`): the relay dead-letters at once. */
  readonly permanent: boolean

  constructor(reason: PublishFailure, event: OutboxEvent, message: string, cause: unknown) {
    super(`[txbox] [${COMPONENT}] ${message}`, { cause })
    this.name = 'JetStreamPublishError'
    this.reason = reason
    this.permanent = reason === 'too-large'
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
 * once a stream stored it. A duplicate ack is checked: the stored message at the sequence
 * JetStream returned is read back and compared with the event (`duplicateCheck`), because
 * another message may hold the event's id in the dedup window.
 * Publishes are asynchronous: many can be in flight on the one connection.
 */
export class JetStreamPublisher implements OutboxPublisher {
  readonly #connection: NatsConnection
  readonly #acks: PubAckCorrelator
  #jsm: Promise<JetStreamManager> | undefined
  readonly #timeoutMs: number
  readonly #expectStream: string | undefined
  readonly #window: number
  readonly #state: ConnectionState

  constructor(options: JetStreamPublisherOptions) {
    if (typeof options?.connection?.jetstream !== 'function')
      throw new ValidationError(COMPONENT, 'options.connection must be a NatsConnection from connect()')
    this.#connection = options.connection
    // Node fires a timer longer than 2^31 - 1 ms after 1 ms: such a timeout would fail every publish.
    this.#timeoutMs = new Validator(COMPONENT).positiveInteger(
      options.timeoutMs ?? 5_000,
      'timeoutMs',
      MAX_TIMER_MS,
    )
    this.#expectStream = options.expectStream
    this.#window = options.window ?? 256
    if (!Number.isSafeInteger(this.#window) || this.#window < 1)
      throw new ValidationError(COMPONENT, `window must be a positive integer; got ${this.#window}`)
    this.#state = ConnectionState.of(options.connection)
    this.#acks = new PubAckCorrelator(options.connection, this.#timeoutMs)
  }

  async publish(event: OutboxEvent): Promise<PublishReceipt> {
    const data = encoder.encode(event.payload)
    const headers = natsHeadersFor(event.eventId, event.headers, event)
    const maxPayload = this.maxMessageBytes()
    if (maxPayload !== undefined) {
      const size =
        natsMessageBytes(event) +
        (this.#expectStream === undefined
          ? 0
          : Buffer.byteLength(`${EXPECTED_STREAM}: ${this.#expectStream}\r\n`))
      if (size > maxPayload)
        throw new JetStreamPublishError(
          'too-large',
          event,
          `event ${JSON.stringify(event.eventId)} is a ${size}-byte NATS message (payload + headers), over the ` +
            `server's max_payload of ${maxPayload}: raise max_payload in the NATS server configuration or split the event`,
          undefined,
        )
    }
    // `Nats-Msg-Id` comes first (see natsHeadersFor): nats-server 2.9 takes the first header
    // line that merely contains "Nats-Msg-Id:" (e.g. `X-Nats-Msg-Id`) as the dedup id.
    if (this.#expectStream !== undefined) headers.set(EXPECTED_STREAM, this.#expectStream)
    let ack: PubAck
    try {
      ack = await this.#acks.publish(event.subject, data, headers)
    } catch (error) {
      throw publishError(event, error)
    }
    if (!ack.duplicate) return { duplicate: false, stream: ack.stream, seq: ack.seq }
    return {
      duplicate: true,
      stream: ack.stream,
      seq: ack.seq,
      ...(await this.#checkDuplicate(event, data, ack)),
    }
  }

  /** The server's `max_payload` from the connection's INFO (undefined before it is known). */
  maxMessageBytes(): number | undefined {
    const maxPayload = this.#connection.info?.max_payload
    return typeof maxPayload === 'number' && maxPayload > 0 ? maxPayload : undefined
  }

  /**
   * Reads the message JetStream says it already holds and compares it with the event: the
   * same id, subject and payload bytes mean this event was delivered before (a relay
   * crashed after publishing, or lost its lease); anything else means another message took
   * the id, and this event was not delivered.
   */
  async #checkDuplicate(
    event: OutboxEvent,
    data: Uint8Array,
    ack: { stream: string; seq: number },
  ): Promise<{ duplicateCheck: DuplicateCheck; duplicateDetail?: string }> {
    let stored: Awaited<ReturnType<JetStreamManager['streams']['getMessage']>>
    try {
      this.#jsm ??= this.#connection.jetstreamManager({ checkAPI: false })
      stored = await (await this.#jsm).streams.getMessage(ack.stream, { seq: ack.seq })
    } catch (error) {
      this.#jsm = undefined
      return {
        duplicateCheck: 'unverified',
        duplicateDetail: `stored message ${ack.stream} #${ack.seq} could not be read: ${error instanceof Error ? error.message : String(error)}`,
      }
    }
    const storedId = stored.header?.get(MSG_ID) ?? ''
    const differences: string[] = []
    if (storedId !== event.eventId) differences.push(`its Nats-Msg-Id is ${JSON.stringify(storedId)}`)
    if (stored.subject !== event.subject)
      differences.push(
        `its subject is ${JSON.stringify(stored.subject)}, the event's ${JSON.stringify(event.subject)}`,
      )
    if (!sameBytes(stored.data, data))
      differences.push(
        `its payload is ${stored.data.length} bytes that differ from the event's ${data.length}`,
      )
    if (differences.length === 0) return { duplicateCheck: 'same' }
    return {
      duplicateCheck: 'conflict',
      duplicateDetail: `stored message #${ack.seq}: ${differences.join('; ')}`,
    }
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

const sameBytes = (left: Uint8Array, right: Uint8Array): boolean =>
  left.length === right.length && Buffer.compare(left, right) === 0

const publishError = (event: OutboxEvent, error: unknown): JetStreamPublishError => {
  const reason = error instanceof PubAckFailure ? error.reason : undefined
  if (reason === 'no-stream') {
    // JetStream answers a publish to a subject no stream listens on with "no responders".
    return new JetStreamPublishError(
      'no-stream',
      event,
      `no JetStream stream matches subject ${JSON.stringify(event.subject)} (503 no responders): ` +
        'create a stream whose subjects include it',
      error,
    )
  }
  if (reason === 'timeout')
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
