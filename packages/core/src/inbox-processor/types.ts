import type { InboxEvent } from '../inbox.js'

/**
 * One received message, transport-neutral. `@txbox/core/nats` adapts JetStream messages to
 * it; tests use plain objects.
 */
export interface InboxMessage {
  /** The producer's event id (`Nats-Msg-Id`); undefined when the message carried none. */
  eventId: string | undefined
  subject: string
  payload: string
  /** The headers as a name -> value map (what the handler sees), `Nats-Msg-Id` excluded. */
  headers: Readonly<Record<string, string>>
  /** The headers in the outbox's stored form (a JSON object string, or the raw string carried), for the inbox row. */
  storedHeaders: string | undefined
  /** The JetStream stream, when known. */
  stream: string | undefined
  /** The message's sequence in that stream, when known. */
  streamSeq: number | undefined
  /**
   * When the stream was created (JetStream stream info `created`, as the server wrote it),
   * when known. Only a message without `eventId` needs it: its fallback id includes it,
   * because a stream deleted and re-created under its name restarts at sequence 1.
   */
  streamCreated?: string | undefined
  /** The event's ordering key (`Txbox-Ordering-Key`), when it has one: its messages are handled in order. */
  orderingKey?: string | undefined
  /** The event's position among its key's events (`Txbox-Key-Seq`), when it has one. */
  keySeq?: number | undefined
  /** How many times the transport has delivered this message, this delivery included (1 = first). */
  deliveryCount: number
  /** Done: never deliver again. */
  ack(): void | Promise<void>
  /** Not done: deliver again after `delayMs`. */
  nak(delayMs: number): void | Promise<void>
  /** Give up: never deliver again (poison message). */
  term(reason: string): void | Promise<void>
  /** Still working: postpone redelivery (JetStream `+WPI`). */
  working?(): void | Promise<void>
}

/** A running subscription: the messages, one by one, until `stop()`. */
export interface InboxSubscription extends AsyncIterable<InboxMessage> {
  /** Ends the iteration (messages not yet handed out are redelivered later by the transport). */
  stop(): void | Promise<void>
}

/** Where the processor gets its messages (a JetStream durable pull consumer). */
export interface InboxSource {
  subscribe(): Promise<InboxSubscription>
  /** Whether the transport is usable right now (for `health()`). */
  health?(): { ok: boolean; detail?: string | undefined }
}

/** What a handler receives. */
export interface InboxHandlerContext<Tx> {
  /** The stored inbox event (after the claim). */
  event: InboxEvent
  /** The message headers (e.g. `traceparent`), `Nats-Msg-Id` excluded. */
  headers: Readonly<Record<string, string>>
  /** The message as received. */
  message: InboxMessage
  /**
   * The open transaction when the processor has a `transaction` runner: write with it and
   * your writes commit together with the processed mark (exactly-once effects). Without a
   * runner it is `undefined`, and typed so (at-least-once effects).
   */
  tx: Tx
}

/**
 * The user's handler. Throw to fail the delivery (it is retried with backoff). `Tx` is the
 * transaction handle it receives: the store's with a `transaction` runner, `undefined` without.
 */
export type InboxHandler<Tx> = (context: InboxHandlerContext<Tx>) => Promise<void>

/** Runs `fn` inside one database transaction of the inbox's store: commit on resolve, roll back on throw. */
export type TransactionRunner<Tx> = <T>(fn: (tx: Tx) => Promise<T>) => Promise<T>
