import { PayloadTooLargeError, utf8Bytes } from '@txbox/core'
import { ADAPTER } from './errors.js'

/**
 * SQLite's default SQLITE_MAX_LENGTH: no string, and no row, may exceed 1,000,000,000 bytes.
 * A JavaScript string can: a payload of 400 million three-byte characters is 1.2 GB as UTF-8.
 */
export const SQLITE_MAX_LENGTH = 1_000_000_000

/** Room left in a row for the integer columns, the small text columns and SQLite's record header. */
const ROW_OVERHEAD_BYTES = 1024

/**
 * Throws `PayloadTooLargeError` for an event whose row SQLite cannot store (instead of the
 * driver's SQLITE_TOOBIG once the transaction has begun). Counting UTF-8 bytes costs a pass
 * over the text, so it is done only when the row could be that large: UTF-8 takes at most
 * three bytes per UTF-16 code unit.
 */
export const assertStorable = (
  event: {
    eventId: string
    subject: string
    payload: string
    headers?: string | undefined
    stream?: string | undefined
  },
  limitBytes = SQLITE_MAX_LENGTH,
): void => {
  // Summed without building an array: this runs for every event of every enqueue.
  const units =
    event.eventId.length +
    event.subject.length +
    event.payload.length +
    (event.headers?.length ?? 0) +
    (event.stream?.length ?? 0)
  if (units * 3 + ROW_OVERHEAD_BYTES <= limitBytes) return
  const texts = [event.eventId, event.subject, event.payload, event.headers ?? '', event.stream ?? '']
  const bytes = texts.reduce((sum, text) => sum + utf8Bytes(text), ROW_OVERHEAD_BYTES)
  if (bytes > limitBytes) throw new PayloadTooLargeError(ADAPTER, event.eventId, bytes, limitBytes)
}
