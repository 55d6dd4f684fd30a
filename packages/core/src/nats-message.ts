import { PayloadTooLargeError, ValidationError } from './errors.js'
import type { EnqueueParams } from './outbox.js'

/**
 * How an outbox event travels as a NATS message (its header encoding and its size on the
 * wire), kept free of the `nats` package so that every store can measure an event at
 * enqueue with the same arithmetic the publisher's message will have.
 */

/**
 * The header that carries an outbox `headers` string that is not a flat JSON object of
 * strings (or that NATS cannot carry as separate headers), exactly as stored.
 */
export const RAW_HEADERS = 'Txbox-Headers'
/** Like {@link RAW_HEADERS}, base64 (UTF-8) encoded, when the raw string has CR/LF or edge whitespace. */
export const RAW_HEADERS_BASE64 = 'Txbox-Headers-Base64'
/** The JetStream dedup header; set to the event id. */
export const MSG_ID = 'Nats-Msg-Id'
/** The header that carries a keyed event's `orderingKey` (docs/CONTRACT.md, "Ordering keys"). */
export const ORDERING_KEY = 'Txbox-Ordering-Key'
/** The header that carries a keyed event's `keySeq`, in decimal. */
export const KEY_SEQ = 'Txbox-Key-Seq'
/** The longest `Txbox-Key-Seq` value (`Number.MAX_SAFE_INTEGER` has 16 digits): what enqueue counts, before the store assigns it. */
const KEY_SEQ_MAX_DIGITS = String(Number.MAX_SAFE_INTEGER).length

/** NATS's default `max_payload` (1 MiB): the default `maxEventBytes` of every store. */
export const DEFAULT_MAX_EVENT_BYTES: number = 1_048_576

// An HTTP/NATS header token: printable ASCII without ':' (what NATS writes as `Key: value`).
const TOKEN = /^[!-9;-~]+$/
// NATS trims values and forbids line breaks; a value it would alter is not carried as is.
const SAFE_VALUE = /^(?:[^\s]|[^\s][^\r\n]*[^\s])?$/

/**
 * How an outbox event's `headers` string travels (txbox's header format):
 * - a JSON object whose values are all strings (`{"traceparent":"00-..."}`) becomes one
 *   NATS header per entry, provided each name is a header token not starting with `Nats-`
 *   or `Txbox-` (those are JetStream's and ours) and each value survives NATS unaltered
 *   (no CR/LF, no leading or trailing whitespace);
 * - anything else (not JSON, an array, a non-string value, an unsafe name or value) is
 *   never dropped: it travels whole in `Txbox-Headers`, or base64 in `Txbox-Headers-Base64`
 *   when it has line breaks or edge whitespace.
 * Returns name -> value pairs to set, without `Nats-Msg-Id`.
 */
export const encodeEventHeaders = (stored: string | undefined): [string, string][] => {
  if (stored === undefined || stored === '') return stored === '' ? [[RAW_HEADERS_BASE64, '']] : []
  const entries = headerEntries(stored)
  if (entries) return entries
  return SAFE_VALUE.test(stored)
    ? [[RAW_HEADERS, stored]]
    : [[RAW_HEADERS_BASE64, Buffer.from(stored, 'utf8').toString('base64')]]
}

/**
 * The entries of a headers string that is a JSON object of strings NATS can carry as
 * separate headers, or undefined. Internal to core (the inbox side decodes with it too).
 */
export const headerEntries = (stored: string): [string, string][] | undefined => {
  let parsed: unknown
  try {
    parsed = JSON.parse(stored)
  } catch {
    // Not JSON: carried raw by the caller of this function, never dropped.
    return undefined
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return undefined
  const entries = Object.entries(parsed)
  for (const [name, value] of entries) {
    if (typeof value !== 'string' || !TOKEN.test(name) || !SAFE_VALUE.test(value)) return undefined
    const lower = name.toLowerCase()
    if (lower.startsWith('nats-') || lower.startsWith('txbox-')) return undefined
  }
  // Header names are matched case-sensitively by NATS but two names differing only in case
  // are one HTTP header; keep them apart by refusing the map form.
  const lowered = new Set(entries.map(([name]) => name.toLowerCase()))
  if (lowered.size !== entries.length) return undefined
  return entries as [string, string][]
}

/**
 * Every header of an outbox event's NATS message, in the order they are written:
 * `Nats-Msg-Id` first, then a keyed event's `Txbox-Ordering-Key` and `Txbox-Key-Seq`, then
 * the event's own headers. JetStream (nats-server 2.9) reads the
 * dedup id at the first occurrence of the text `Nats-Msg-Id` in the header block; a header
 * named `X-Nats-Msg-Id`, or a value mentioning it, written earlier would hide the real one
 * and turn dedup off for that message.
 */
export const eventHeaderPairs = (
  eventId: string,
  stored: string | undefined,
  ordering?: OrderingHeaders,
): [string, string][] => {
  const pairs: [string, string][] = [[MSG_ID, eventId]]
  if (ordering?.orderingKey !== undefined) {
    pairs.push([ORDERING_KEY, ordering.orderingKey])
    if (ordering.keySeq !== undefined) pairs.push([KEY_SEQ, String(ordering.keySeq)])
  }
  pairs.push(...encodeEventHeaders(stored))
  return pairs
}

/** A keyed event's ordering fields; `keySeq` is absent before the store assigned it. */
export interface OrderingHeaders {
  readonly orderingKey?: string | undefined
  readonly keySeq?: number | undefined
}

const HEADER_LINE = 'NATS/1.0\r\n'
// `Name: value\r\n` per header, and the blank line that ends the block.
const SEPARATOR_BYTES = ': '.length + '\r\n'.length
const END_BYTES = '\r\n'.length

const utf8Length = (text: string): number => Buffer.byteLength(text, 'utf8')

/**
 * The bytes an outbox event's NATS message has: the UTF-8 payload plus the header block
 * the publisher writes (`NATS/1.0`, `Nats-Msg-Id`, the event's headers as
 * {@link encodeEventHeaders} encodes them, base64 expansion included). This is what NATS
 * compares with the server's `max_payload`. Headers a publisher adds by its own options
 * (`Nats-Expected-Stream`) are not counted.
 */
export const natsMessageBytes = (
  event: Pick<EnqueueParams, 'eventId' | 'payload' | 'headers' | 'orderingKey'> & OrderingHeaders,
): number => {
  let bytes = utf8Length(event.payload) + HEADER_LINE.length + END_BYTES
  for (const [name, value] of eventHeaderPairs(event.eventId, event.headers, event)) {
    bytes += name.length + SEPARATOR_BYTES + utf8Length(value)
  }
  // Before the store assigns it, `Txbox-Key-Seq` is counted at its longest.
  if (event.orderingKey !== undefined && event.keySeq === undefined)
    bytes += KEY_SEQ.length + SEPARATOR_BYTES + KEY_SEQ_MAX_DIGITS
  return bytes
}

/**
 * Throws {@link PayloadTooLargeError} when an event's NATS message ({@link natsMessageBytes})
 * is over `maxEventBytes`. Every store calls it in `findOrCreate` / `findOrCreateMany`
 * before any write, so no relay ever holds an event NATS would refuse.
 */
export const assertEventFits = (
  adapter: string,
  params: Pick<EnqueueParams, 'eventId' | 'payload' | 'headers' | 'orderingKey'>,
  maxEventBytes: number,
): void => {
  // A UTF-16 code unit is at most 3 UTF-8 bytes and base64 makes 4 of every 3: cheap bound first.
  const bound =
    4 *
      (params.payload.length +
        (params.headers?.length ?? 0) +
        params.eventId.length +
        (params.orderingKey?.length ?? 0)) +
    256
  if (bound <= maxEventBytes) return
  const bytes = natsMessageBytes(params)
  if (bytes > maxEventBytes) {
    throw new PayloadTooLargeError(
      adapter,
      params.eventId,
      bytes,
      maxEventBytes,
      '(counted as its NATS message: payload + headers). NATS refuses messages over its max_payload: ' +
        "store large data elsewhere and enqueue a reference, or raise the server's max_payload and the store's maxEventBytes option together",
    )
  }
}

/**
 * Validates a store's `maxEventBytes` option: a positive integer, at most the store's own
 * hard limit when it has one. Absent, it is NATS's default `max_payload` (1 MiB), or the
 * hard limit when that is smaller (DynamoDB's 400 KB item).
 */
export const resolveMaxEventBytes = (adapter: string, value: unknown, hardLimitBytes?: number): number => {
  if (value === undefined)
    return Math.min(DEFAULT_MAX_EVENT_BYTES, hardLimitBytes ?? Number.POSITIVE_INFINITY)
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new ValidationError(
      adapter,
      `maxEventBytes must be a positive integer (bytes of the NATS message: payload + headers); got ${String(value)}`,
    )
  }
  if (hardLimitBytes !== undefined && value > hardLimitBytes) {
    throw new ValidationError(
      adapter,
      `maxEventBytes must be at most ${hardLimitBytes}, the most this store can hold in one event; got ${value}`,
    )
  }
  return value
}
