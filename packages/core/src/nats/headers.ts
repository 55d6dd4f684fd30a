import { type MsgHdrs, headers as natsHeaders } from 'nats'

/**
 * The header that carries an outbox `headers` string that is not a flat JSON object of
 * strings (or that NATS cannot carry as separate headers), exactly as stored.
 */
export const RAW_HEADERS = 'Txbox-Headers'
/** Like {@link RAW_HEADERS}, base64 (UTF-8) encoded, when the raw string has CR/LF or edge whitespace. */
export const RAW_HEADERS_BASE64 = 'Txbox-Headers-Base64'
/** The JetStream dedup header; set to the event id. */
export const MSG_ID = 'Nats-Msg-Id'

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

const headerEntries = (stored: string): [string, string][] | undefined => {
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

/** Builds the NATS headers of an outbox event: its own headers, then `Nats-Msg-Id`. */
export const natsHeadersFor = (eventId: string, stored: string | undefined): MsgHdrs => {
  const result = natsHeaders()
  for (const [name, value] of encodeEventHeaders(stored)) result.set(name, value)
  result.set(MSG_ID, eventId)
  return result
}

/** What the inbox side makes of a message's NATS headers. */
export interface DecodedHeaders {
  /** The `Nats-Msg-Id`, if any. */
  eventId: string | undefined
  /** Every header except `Nats-*` and `Txbox-Headers*` (for the handler: `traceparent`, ...). */
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
  let raw: string | undefined
  if (received) {
    for (const [name, values] of received) {
      const value = values[values.length - 1] ?? ''
      const lower = name.toLowerCase()
      if (lower === MSG_ID.toLowerCase()) eventId = value === '' ? undefined : value
      else if (lower === RAW_HEADERS.toLowerCase()) raw = value
      else if (lower === RAW_HEADERS_BASE64.toLowerCase()) raw = Buffer.from(value, 'base64').toString('utf8')
      else if (!lower.startsWith('nats-')) map[name] = value
    }
  }
  if (raw !== undefined) {
    // A raw string that happens to be a JSON object of strings still gives the handler a map.
    for (const [name, value] of headerEntries(raw) ?? []) map[name] ??= value
    return { eventId, map, stored: raw }
  }
  return { eventId, map, stored: Object.keys(map).length === 0 ? undefined : JSON.stringify(map) }
}
