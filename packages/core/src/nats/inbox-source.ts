import type { ConsumerMessages, JetStreamManager, JsMsg, NatsConnection } from 'nats'
import { ValidationError } from '../errors.js'
import type { InboxMessage, InboxSource, InboxSubscription } from '../inbox-processor/types.js'
import { ConnectionState } from './connection-state.js'
import { decodeNatsHeaders } from './headers.js'

const COMPONENT = 'nats'
const decoder = new TextDecoder()

/** Options of {@link createJetStreamInboxSource}. */
export interface JetStreamInboxSourceOptions {
  /** A connection you opened; never closed by the source. */
  connection: NatsConnection
  /** The stream to consume. */
  stream: string
  /** The durable pull consumer's name (create it with `ensureDurableConsumer`). */
  durable: string
  /** Messages buffered per pull (default 64). */
  maxMessages?: number | undefined
  /**
   * How long one pull request lives on the server (default 5,000 ms, at least 1,000). The
   * server sends heartbeats at half of it; after two missed ones the consumer is looked up
   * again, which is how a consumer re-created with its stream (sequences restart at 1), or
   * one whose cluster node was killed, is found: measured with nats.js's own default of
   * 30,000 ms the inbox stalled ~45 s after a stream was re-created and up to 33 s after the
   * node holding the pull was killed; with 2,000 ms it resumed in ~3 s. An idle consumer
   * costs one pull request per period.
   */
  pullExpiresMs?: number | undefined
}

/**
 * A JetStream message as an {@link InboxMessage}. `streamCreated` is the stream's creation
 * time (its stream info `created`), which the source looks up for a message without
 * `Nats-Msg-Id`, so that its fallback id tells apart two streams of one name.
 */
export const toInboxMessage = (
  msg: JsMsg,
  streamCreated?: string,
  termTakesReason: () => boolean = () => true,
): InboxMessage => {
  const headers = decodeNatsHeaders(msg.headers)
  return {
    ...(streamCreated === undefined ? {} : { streamCreated }),
    eventId: headers.eventId,
    ...(headers.orderingKey === undefined ? {} : { orderingKey: headers.orderingKey }),
    ...(headers.keySeq === undefined ? {} : { keySeq: headers.keySeq }),
    subject: msg.subject,
    payload: decoder.decode(msg.data),
    headers: headers.map,
    storedHeaders: headers.stored,
    stream: msg.info.stream,
    streamSeq: msg.info.streamSequence,
    deliveryCount: msg.info.deliveryCount,
    ack: () => msg.ack(),
    nak: (delayMs) => msg.nak(delayMs),
    // nats-server before 2.10 ignores a terminate that carries a reason (`+TERM <reason>`) and
    // redelivers the message every ack wait: there only the bare `+TERM` ends it.
    term: (reason) => (termTakesReason() ? msg.term(reason) : msg.term()),
    working: () => msg.working(),
  }
}

/**
 * Whether a server of this version honours `+TERM <reason>` (2.10 and later). Unknown: no, since
 * the bare terminate works on every server and only the reason in its advisory is lost.
 */
export const serverTakesTermReason = (version: string | undefined): boolean => {
  const match = /^v?(\d+)\.(\d+)\./.exec(version ?? '')
  if (!match) return false
  const [major, minor] = [Number(match[1]), Number(match[2])]
  return major > 2 || (major === 2 && minor >= 10)
}

/** Delay before a message whose stream could not be looked up is delivered again. */
const STREAM_LOOKUP_RETRY_MS = 1_000

/**
 * The creation time of a stream, for messages without `Nats-Msg-Id`. A stream deleted and
 * re-created under its name restarts at sequence 1, possibly while a consumer keeps
 * pulling, so a cached answer is only trusted for messages stored before the server
 * produced it (its `ts`); a later message looks the stream up again. Messages with
 * `Nats-Msg-Id` never need it, so a stream of txbox events costs no lookup at all.
 */
class StreamCreationTimes {
  readonly #cache = new Map<string, { created: string; asOfMs: number }>()
  #jsm: Promise<JetStreamManager> | undefined

  constructor(readonly connection: NatsConnection) {}

  async of(msg: JsMsg): Promise<string> {
    const stream = msg.info.stream
    const storedMs = Math.floor(msg.info.timestampNanos / 1e6)
    const cached = this.#cache.get(stream)
    if (cached !== undefined && storedMs < cached.asOfMs) return cached.created
    this.#jsm ??= this.connection.jetstreamManager()
    const info = await (await this.#jsm).streams.info(stream)
    // Without `ts` (servers before 2.10) every later message looks the stream up again.
    const asOfMs = info.ts === undefined ? Number.NEGATIVE_INFINITY : Date.parse(info.ts)
    this.#cache.set(stream, { created: info.created, asOfMs })
    return info.created
  }
}

/**
 * Messages of a JetStream durable pull consumer, for the InboxProcessor. nats.js keeps
 * pulling across reconnects and server restarts (the durable consumer's state lives on the
 * server), so the iteration only ends on `stop()`.
 */
/** The default {@link JetStreamInboxSourceOptions.pullExpiresMs}. */
export const DEFAULT_PULL_EXPIRES_MS = 5_000

export const createJetStreamInboxSource = (options: JetStreamInboxSourceOptions): InboxSource => {
  if (typeof options?.connection?.jetstream !== 'function')
    throw new ValidationError(COMPONENT, 'options.connection must be a NatsConnection from connect()')
  const { pullExpiresMs } = options
  if (pullExpiresMs !== undefined && !(Number.isSafeInteger(pullExpiresMs) && pullExpiresMs >= 1_000))
    throw new ValidationError(
      COMPONENT,
      `pullExpiresMs must be an integer of at least 1000 (JetStream's minimum pull lifetime); got ${String(pullExpiresMs)}`,
    )
  const state = ConnectionState.of(options.connection)
  const creationTimes = new StreamCreationTimes(options.connection)
  // Asked at each terminate: a reconnect may have reached a server of another version.
  const termTakesReason = () => serverTakesTermReason(options.connection.info?.version)
  /** The message with its stream's creation time when it has no `Nats-Msg-Id`; undefined: put back. */
  const adapt = async (msg: JsMsg): Promise<InboxMessage | undefined> => {
    const message = toInboxMessage(msg, undefined, termTakesReason)
    if (message.eventId !== undefined) return message
    try {
      return toInboxMessage(msg, await creationTimes.of(msg), termTakesReason)
    } catch {
      // Without the creation time the message has no id that is safe across a re-created
      // stream: it is delivered again rather than recorded under one that could collide.
      msg.nak(STREAM_LOOKUP_RETRY_MS)
      return undefined
    }
  }
  return {
    async subscribe(): Promise<InboxSubscription> {
      const consumer = await options.connection.jetstream().consumers.get(options.stream, options.durable)
      const messages: ConsumerMessages = await consumer.consume({
        max_messages: options.maxMessages ?? 64,
        expires: options.pullExpiresMs ?? DEFAULT_PULL_EXPIRES_MS,
      })
      return {
        async *[Symbol.asyncIterator]() {
          for await (const msg of messages) {
            const message = await adapt(msg)
            if (message !== undefined) yield message
          }
        },
        stop: async () => {
          await messages.close()
        },
      }
    },
    health: () => state.health(),
  }
}
