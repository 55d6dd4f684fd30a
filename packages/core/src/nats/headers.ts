import { type MsgHdrs, headers as natsHeaders } from 'nats'
import {
  encodeEventHeaders,
  eventHeaderPairs,
  headerEntries,
  KEY_SEQ,
  MSG_ID,
  ORDERING_KEY,
  type OrderingHeaders,
  RAW_HEADERS,
  RAW_HEADERS_BASE64,
} from '../nats-message.js'

// The encoding itself is nats-free (core's nats-message.ts) so that stores can measure an
// event at enqueue; this module keeps the public names of the `@txbox/core/nats` entry.
export { encodeEventHeaders, KEY_SEQ, MSG_ID, ORDERING_KEY, RAW_HEADERS, RAW_HEADERS_BASE64 }

/**
 * Builds the NATS headers of an outbox event: `Nats-Msg-Id` first, then its own headers
 * (see `eventHeaderPairs` for why the order matters to JetStream's dedup).
 */
export const natsHeadersFor = (
  eventId: string,
  stored: string | undefined,
  ordering?: OrderingHeaders,
): MsgHdrs => {
  const result = natsHeaders()
  for (const [name, value] of eventHeaderPairs(eventId, stored, ordering)) result.set(name, value)
  return result
}

/** What the inbox side makes of a message's NATS headers. */
export interface DecodedHeaders {
  /** The `Nats-Msg-Id`, if any. */
  eventId: string | undefined
  /** `Txbox-Ordering-Key`, if any (a keyed event). */
  orderingKey: string | undefined
  /** `Txbox-Key-Seq` when it is a positive safe integer in decimal, else undefined. */
  keySeq: number | undefined
  /** Every header except `Nats-*`, `Txbox-Headers*` and the ordering ones (for the handler: `traceparent`, ...). */
  map: Record<string, string>
  /**
   * The headers in the outbox's stored form, for the inbox row: the raw string when it
   * travelled raw, else the map as a JSON object string (equivalent JSON, not necessarily
   * byte-identical to what was enqueued), undefined when there is none.
   */
  stored: string | undefined
}

/** Reverses {@link natsHeadersFor}. */
export const decodeNatsHeaders = (received: MsgHdrs | undefined): DecodedHeaders => {
  const map: Record<string, string> = {}
  let eventId: string | undefined
  let orderingKey: string | undefined
  let keySeq: number | undefined
  let raw: string | undefined
  if (received) {
    for (const [name, values] of received) {
      const value = values[values.length - 1] ?? ''
      const lower = name.toLowerCase()
      if (lower === MSG_ID.toLowerCase()) eventId = value === '' ? undefined : value
      else if (lower === ORDERING_KEY.toLowerCase()) orderingKey = value === '' ? undefined : value
      else if (lower === KEY_SEQ.toLowerCase()) keySeq = decimalSeq(value)
      else if (lower === RAW_HEADERS.toLowerCase()) raw = value
      else if (lower === RAW_HEADERS_BASE64.toLowerCase()) raw = Buffer.from(value, 'base64').toString('utf8')
      else if (!lower.startsWith('nats-')) map[name] = value
    }
  }
  if (raw !== undefined) {
    // A raw string that happens to be a JSON object of strings still gives the handler a map.
    for (const [name, value] of headerEntries(raw) ?? []) map[name] ??= value
    return { eventId, orderingKey, keySeq, map, stored: raw }
  }
  const stored = Object.keys(map).length === 0 ? undefined : JSON.stringify(map)
  return { eventId, orderingKey, keySeq, map, stored }
}

const decimalSeq = (value: string): number | undefined => {
  if (!/^[1-9][0-9]{0,15}$/.test(value)) return undefined
  const seq = Number(value)
  return Number.isSafeInteger(seq) ? seq : undefined
}
