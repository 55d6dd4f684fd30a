import type { ConsumerMessages, JsMsg, NatsConnection } from 'nats'
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
}

/** A JetStream message as an {@link InboxMessage}. */
export const toInboxMessage = (msg: JsMsg): InboxMessage => {
  const headers = decodeNatsHeaders(msg.headers)
  return {
    eventId: headers.eventId,
    subject: msg.subject,
    payload: decoder.decode(msg.data),
    headers: headers.map,
    storedHeaders: headers.stored,
    stream: msg.info.stream,
    streamSeq: msg.info.streamSequence,
    deliveryCount: msg.info.deliveryCount,
    ack: () => msg.ack(),
    nak: (delayMs) => msg.nak(delayMs),
    term: (reason) => msg.term(reason),
    working: () => msg.working(),
  }
}

/**
 * Messages of a JetStream durable pull consumer, for the InboxProcessor. nats.js keeps
 * pulling across reconnects and server restarts (the durable consumer's state lives on the
 * server), so the iteration only ends on `stop()`.
 */
export const createJetStreamInboxSource = (options: JetStreamInboxSourceOptions): InboxSource => {
  if (typeof options?.connection?.jetstream !== 'function')
    throw new ValidationError(COMPONENT, 'options.connection must be a NatsConnection from connect()')
  const state = ConnectionState.of(options.connection)
  return {
    async subscribe(): Promise<InboxSubscription> {
      const consumer = await options.connection.jetstream().consumers.get(options.stream, options.durable)
      const messages: ConsumerMessages = await consumer.consume({ max_messages: options.maxMessages ?? 64 })
      return {
        async *[Symbol.asyncIterator]() {
          for await (const msg of messages) yield toInboxMessage(msg)
        },
        stop: async () => {
          await messages.close()
        },
      }
    },
    health: () => state.health(),
  }
}
