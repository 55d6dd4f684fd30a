import type { Context, Span } from '@opentelemetry/api'
import type { InboxEvent } from '../inbox.js'
import type { InboxMessage } from '../inbox-processor/types.js'
import { messageOf } from '../relay/sleep.js'
import { ATTR, MESSAGING_SYSTEM, type Outcome } from './attributes.js'
import { contextFromHeaders, type Instrumentation, InstrumentationSlot } from './instrumentation.js'
import type { SnapshotSource } from './snapshot-instruments.js'

/** One message's spans, from its arrival to its ack, nak or term. */
export interface MessageTrace {
  /** Ends the `receive` span: the inbox claim decided what to do with the message. */
  received(outcome: Outcome | 'claimed', event?: InboxEvent, error?: unknown): void
  /** Runs the handler (and the processed mark) inside a `process` span, child of the message's context. */
  process<T>(run: () => Promise<T>): Promise<T>
  /** Ends the `process` span: the handler succeeded and the message was acked. */
  processed(): void
  /** Ends the `process` span with the handler's error; `terminated`: no redelivery (dead letter). */
  failed(error: unknown, terminated: boolean): void
}

const NO_TRACE: MessageTrace = {
  received: () => {},
  process: (run) => run(),
  processed: () => {},
  failed: () => {},
}

/**
 * The InboxProcessor's OpenTelemetry spans: per message a `receive <subject>` CONSUMER span
 * for the inbox claim (its outcome: claimed, skipped duplicate, in flight elsewhere,
 * terminated) and, when the handler runs, a `process <subject>` CONSUMER span around it.
 * Both are children of the trace context the message carries (stored at enqueue), and the
 * handler runs inside the `process` span's context, so spans it starts nest under it.
 */
export class InboxTelemetry {
  readonly #slot: InstrumentationSlot
  readonly #source: SnapshotSource

  constructor(source: SnapshotSource) {
    this.#slot = new InstrumentationSlot('inbox', source)
    this.#source = source
  }

  open(): Promise<void> {
    return this.#slot.open()
  }

  close(): void {
    this.#slot.close()
  }

  /** Starts the `receive` span of a message (`eventId` as the inbox records it, when it has one). */
  receive(message: InboxMessage, eventId: string | undefined): MessageTrace {
    const on = this.#slot.current
    if (on === null) return NO_TRACE
    return new RecordedMessageTrace(on, message, eventId, this.#source.workerId)
  }
}

class RecordedMessageTrace implements MessageTrace {
  readonly #on: Instrumentation
  readonly #parent: Context
  readonly #attributes: Record<string, string | number>
  readonly #subject: string
  readonly #receive: Span
  #process: Span | undefined

  constructor(on: Instrumentation, message: InboxMessage, eventId: string | undefined, workerId: string) {
    this.#on = on
    this.#parent = contextFromHeaders(on.api, message.headers)
    this.#subject = message.subject
    this.#attributes = {
      [ATTR.system]: MESSAGING_SYSTEM,
      [ATTR.destination]: message.subject,
      [ATTR.deliveryCount]: message.deliveryCount,
      [ATTR.workerId]: workerId,
      ...(eventId === undefined ? {} : { [ATTR.messageId]: eventId }),
      ...(message.stream === undefined ? {} : { [ATTR.stream]: message.stream }),
      ...(message.streamSeq === undefined ? {} : { [ATTR.streamSeq]: message.streamSeq }),
    }
    this.#receive = on.tracer.startSpan(
      `receive ${message.subject}`,
      {
        kind: on.api.SpanKind.CONSUMER,
        attributes: { ...this.#attributes, [ATTR.operationName]: 'receive', [ATTR.operationType]: 'receive' },
      },
      this.#parent,
    )
  }

  received(outcome: Outcome | 'claimed', event?: InboxEvent, error?: unknown): void {
    this.#receive.setAttribute(ATTR.outcome, outcome)
    if (event !== undefined) this.#receive.setAttribute(ATTR.retryCount, Math.max(0, event.deliveries - 1))
    if (error !== undefined) {
      this.#receive.recordException(error instanceof Error ? error : messageOf(error))
      this.#receive.setStatus({ code: this.#on.api.SpanStatusCode.ERROR, message: messageOf(error) })
    }
    this.#receive.end()
  }

  process<T>(run: () => Promise<T>): Promise<T> {
    const { api, tracer } = this.#on
    const span = tracer.startSpan(
      `process ${this.#subject}`,
      {
        kind: api.SpanKind.CONSUMER,
        attributes: { ...this.#attributes, [ATTR.operationName]: 'process', [ATTR.operationType]: 'process' },
      },
      this.#parent,
    )
    this.#process = span
    return api.context.with(api.trace.setSpan(this.#parent, span), run)
  }

  processed(): void {
    this.#process?.setAttribute(ATTR.outcome, 'processed')
    this.#process?.end()
  }

  failed(error: unknown, terminated: boolean): void {
    const span = this.#process
    if (span === undefined) return
    span.recordException(error instanceof Error ? error : messageOf(error))
    span.setAttribute(ATTR.errorType, error instanceof Error ? error.name : 'error')
    span.setAttribute(ATTR.outcome, terminated ? 'terminated' : 'redelivered')
    if (terminated) span.setAttribute(ATTR.deadLetterReason, 'max-deliveries')
    span.setStatus({ code: this.#on.api.SpanStatusCode.ERROR, message: messageOf(error) })
    span.end()
  }
}
