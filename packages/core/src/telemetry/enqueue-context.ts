import { headerEntries, natsMessageBytes } from '../nats-message.js'
import type { EnqueueParams } from '../outbox.js'
import { type OtelApi, otelApiNow } from './otel-api.js'

/**
 * The headers string with the entries of `carrier` the caller did not set (names compared
 * case-insensitively) appended, or undefined when nothing can be added. The caller's text is
 * kept byte for byte: the new entries are spliced in before the closing brace. Only a
 * headers string that travels as one NATS header per entry (see `encodeEventHeaders`) takes
 * them; any other string travels whole and is left alone.
 */
export const addHeaderEntries = (
  headers: string | undefined,
  carrier: Readonly<Record<string, string>>,
): string | undefined => {
  const existing = headers === undefined ? [] : headerEntries(headers)
  if (existing === undefined) return undefined
  const taken = new Set(existing.map(([name]) => name.toLowerCase()))
  const added = Object.entries(carrier).filter(([name]) => !taken.has(name.toLowerCase()))
  if (added.length === 0) return undefined
  const text = added.map(([name, value]) => `${JSON.stringify(name)}:${JSON.stringify(value)}`).join(',')
  let result: string
  if (headers === undefined) result = `{${text}}`
  else {
    const close = headers.lastIndexOf('}')
    result = `${headers.slice(0, close)}${existing.length > 0 ? ',' : ''}${text}${headers.slice(close)}`
  }
  // A propagator's value NATS could not carry unaltered would turn the whole map raw.
  return headerEntries(result) === undefined ? undefined : result
}

const withContext = (api: OtelApi, events: readonly EnqueueParams[], maxEventBytes: number) => {
  const active = api.context.active()
  const span = api.trace.getSpanContext(active)
  if (span === undefined || !api.trace.isSpanContextValid(span)) return events
  const carrier: Record<string, string> = {}
  // The registered propagator decides what travels: W3C traceparent/tracestate, baggage
  // when the SDK is configured with it. Nothing is written without an SDK.
  api.propagation.inject(active, carrier)
  if (Object.keys(carrier).length === 0) return events
  return events.map((event) => {
    const headers = addHeaderEntries(event.headers, carrier)
    if (headers === undefined) return event
    const traced = { ...event, headers }
    // The event was checked against maxEventBytes as given; its trace context must not make
    // an event that fits unstorable, so an event it would push over the limit goes without.
    return natsMessageBytes(traced) <= maxEventBytes ? traced : event
  })
}

/**
 * The events as they are stored: with the active span's trace context (`traceparent`,
 * `tracestate`, baggage: whatever the registered propagator writes) added to their headers
 * when `@opentelemetry/api` is installed and a span is active, without overwriting a header
 * the caller set. Synchronous, so an enqueue reaches the store in the order it was called.
 */
export const withEnqueueContext = (
  events: readonly EnqueueParams[],
  maxEventBytes: number,
): readonly EnqueueParams[] => {
  const api = otelApiNow()
  return api === null ? events : withContext(api, events, maxEventBytes)
}
