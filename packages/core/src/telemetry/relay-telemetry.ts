import type { Context, Histogram, Span } from '@opentelemetry/api'
import type { OutboxEvent } from '../outbox.js'
import { LATENCY_BUCKETS_MS } from '../relay/histogram.js'
import { failureReason } from '../relay/publish-failures.js'
import { messageOf } from '../relay/sleep.js'
import type { PublishReceipt } from '../relay/types.js'
import { ATTR, MESSAGING_SYSTEM, type Outcome } from './attributes.js'
import { contextFromHeaders, type Instrumentation, InstrumentationSlot, seconds } from './instrumentation.js'
import type { SnapshotSource } from './snapshot-instruments.js'

const BUCKETS_S = LATENCY_BUCKETS_MS.map((ms) => ms / 1_000)

interface PublishSpan {
  readonly span: Span
  readonly context: Context
  /** The subject the span is named after (the subject map may change it before the publish). */
  subject: string
}

/**
 * The OutboxRelay's OpenTelemetry spans and histograms. Per event a `publish <subject>`
 * PRODUCER span, child of the context stored at enqueue (so the publish joins the trace of
 * the request that enqueued), that ends with the event's outcome: published, duplicate,
 * retry (error status, one span per attempt), dead-letter (error status and its reason) or
 * lease-lost. Claims that returned events and `markManyAsSent` calls are INTERNAL spans with
 * the batch size; empty polls record only the claim latency. Every method is a no-op
 * without the API or before {@link open} settled.
 */
export class RelayTelemetry {
  readonly #slot: InstrumentationSlot
  readonly #source: SnapshotSource
  readonly #spans = new Map<string, PublishSpan>()
  #histograms: { claim: Histogram; publish: Histogram } | undefined

  constructor(source: SnapshotSource) {
    this.#slot = new InstrumentationSlot('relay', source)
    this.#source = source
  }

  /** Records from this call on; resolves once the observable instruments are registered. */
  open(): Promise<void> {
    const registering = this.#slot.open()
    this.#createHistograms()
    return registering
  }

  #createHistograms(): void {
    const meter = this.#slot.current?.meter
    if (meter === undefined || this.#histograms !== undefined) return
    const advice = { explicitBucketBoundaries: BUCKETS_S }
    this.#histograms = {
      claim: meter.createHistogram('txbox.relay.claim_duration', {
        unit: 's',
        description: 'claim round-trip time',
        advice,
      }),
      publish: meter.createHistogram('txbox.relay.publish_duration', {
        unit: 's',
        description: 'time from publish to the PubAck (or the failure)',
        advice,
      }),
    }
  }

  close(): void {
    this.endAll()
    this.#slot.close()
  }

  // Read when recording: the relay builds this before its constructor has set workerId.
  get #workerId(): string {
    return this.#source.workerId
  }

  get #on(): Instrumentation | null {
    return this.#slot.current
  }

  /** A claim took `ms` and returned `count` events (undefined: it failed with `error`). */
  claimed(ms: number, count: number | undefined, error?: unknown): void {
    const on = this.#on
    if (on === null) return
    this.#histograms?.claim.record(seconds(ms), { worker_id: this.#workerId })
    if (count === 0) return
    this.#internalSpan(on, 'claim outbox', ms, { [ATTR.batchCount]: count ?? 0 }, error)
  }

  /** `markManyAsSent` of `count` ids took `ms`; `notApplied` came back (undefined: it failed with `error`). */
  marked(ms: number, count: number, notApplied: number | undefined, error?: unknown): void {
    const on = this.#on
    if (on === null) return
    this.#internalSpan(
      on,
      'mark sent outbox',
      ms,
      { [ATTR.batchCount]: count, ...(notApplied === undefined ? {} : { [ATTR.notApplied]: notApplied }) },
      error,
    )
  }

  #internalSpan(
    on: Instrumentation,
    name: string,
    ms: number,
    attributes: Record<string, number>,
    error: unknown,
  ): void {
    const endTime = Date.now()
    const span = on.tracer.startSpan(name, {
      kind: on.api.SpanKind.INTERNAL,
      startTime: endTime - ms,
      attributes: { [ATTR.system]: MESSAGING_SYSTEM, [ATTR.workerId]: this.#workerId, ...attributes },
    })
    if (error !== undefined) fail(on, span, error)
    span.end(endTime)
  }

  /** The relay starts working on a claimed event (before the subject map and the size check). */
  publishing(event: OutboxEvent): void {
    const on = this.#on
    if (on === null) return
    const parent = contextFromHeaders(on.api, event.headers)
    const span = on.tracer.startSpan(
      `publish ${event.subject}`,
      {
        kind: on.api.SpanKind.PRODUCER,
        attributes: {
          [ATTR.system]: MESSAGING_SYSTEM,
          [ATTR.operationName]: 'publish',
          [ATTR.operationType]: 'send',
          [ATTR.destination]: event.subject,
          [ATTR.messageId]: event.eventId,
          [ATTR.retryCount]: event.retryCount,
          [ATTR.workerId]: this.#workerId,
        },
      },
      parent,
    )
    if (span.isRecording()) span.setAttribute(ATTR.bodySize, Buffer.byteLength(event.payload, 'utf8'))
    this.#spans.set(event.eventId, {
      span,
      context: on.api.trace.setSpan(parent, span),
      subject: event.subject,
    })
  }

  /** Runs the publish inside the event's span (a NATS instrumentation nests under it) and times it. */
  async publish<T>(event: OutboxEvent, run: () => Promise<T>): Promise<T> {
    const on = this.#on
    const entry = this.#spans.get(event.eventId)
    if (on === null || entry === undefined) return run()
    if (event.subject !== entry.subject) {
      entry.subject = event.subject
      entry.span.updateName(`publish ${event.subject}`)
      entry.span.setAttribute(ATTR.destination, event.subject)
    }
    const started = performance.now()
    let errorType: string | undefined
    try {
      return await on.api.context.with(entry.context, run)
    } catch (error) {
      errorType = failureReason(error)
      throw error
    } finally {
      // No subject attribute: subjects can carry ids, and a series per id would be unbounded.
      this.#histograms?.publish.record(seconds(performance.now() - started), {
        worker_id: this.#workerId,
        ...(errorType === undefined ? {} : { [ATTR.errorType]: errorType }),
      })
    }
  }

  /** JetStream stored the event (or answered duplicate); the span ends with {@link end}. */
  acknowledged(eventId: string, receipt: PublishReceipt): void {
    const span = this.#spans.get(eventId)?.span
    if (span === undefined) return
    if (receipt.stream !== undefined) span.setAttribute(ATTR.stream, receipt.stream)
    if (receipt.seq !== undefined) span.setAttribute(ATTR.streamSeq, receipt.seq)
    span.setAttribute(ATTR.duplicate, receipt.duplicate)
  }

  /** The publish failed; the span ends with the relay's decision (retry or dead-letter). */
  failed(eventId: string, error: unknown): void {
    const on = this.#on
    const span = this.#spans.get(eventId)?.span
    if (on === null || span === undefined) return
    fail(on, span, error)
  }

  /** Ends the event's span as dead-lettered: error status, the reason and the stored message. */
  deadLettered(eventId: string, reason: string, message: string): void {
    const on = this.#on
    const span = this.#spans.get(eventId)?.span
    if (on === null || span === undefined) return
    span.setAttribute(ATTR.deadLetterReason, reason)
    span.addEvent('dead-lettered', { [ATTR.deadLetterReason]: reason })
    span.setStatus({ code: on.api.SpanStatusCode.ERROR, message })
    this.end(eventId, 'dead-letter')
  }

  /** Ends the event's span with its outcome. */
  end(eventId: string, outcome: Outcome): void {
    const entry = this.#spans.get(eventId)
    if (entry === undefined) return
    this.#spans.delete(eventId)
    entry.span.setAttribute(ATTR.outcome, outcome)
    entry.span.end()
  }

  /**
   * Ends what a batch left open (a store error cut it short): the spans of `eventIds`, or
   * every open span when the relay closes. Only the batch's own ids: other batches may still
   * be publishing.
   */
  endAll(eventIds: Iterable<string> = [...this.#spans.keys()]): void {
    for (const eventId of eventIds) this.end(eventId, 'store-error')
  }
}

const fail = (on: Instrumentation, span: Span, error: unknown): void => {
  span.recordException(error instanceof Error ? error : messageOf(error))
  span.setAttribute(ATTR.errorType, failureReason(error))
  span.setStatus({ code: on.api.SpanStatusCode.ERROR, message: messageOf(error) })
}
