import type { EnqueueParams, InboxParams } from '@txbox/core'

/**
 * Event ids whose lexicographic order differs from their enqueue order, so that a store
 * that sorts by id (or by a timestamp with ids breaking ties) is caught.
 */
export const scrambledId = (index: number, tag = 'evt'): string =>
  `${tag}-${((index * 7_919 + 13) % 1_000).toString(36).padStart(2, '0')}-${index}`

/** A plain outbox event. */
export const outboxEvent = (eventId: string, overrides: Partial<EnqueueParams> = {}): EnqueueParams => ({
  eventId,
  subject: 'orders.created',
  payload: JSON.stringify({ id: eventId, total: 42 }),
  ...overrides,
})

/** `count` events with scrambled ids. */
export const outboxEvents = (count: number, tag = 'evt'): EnqueueParams[] =>
  Array.from({ length: count }, (_, index) => outboxEvent(scrambledId(index, tag)))

/** A plain inbox message. */
export const inboxEvent = (eventId: string, overrides: Partial<InboxParams> = {}): InboxParams => ({
  eventId,
  subject: 'orders.created',
  payload: JSON.stringify({ id: eventId }),
  ...overrides,
})

/** Splits a list into chunks, for bulk enqueue of large fixtures. */
export const chunk = <T>(items: readonly T[], size: number): T[][] => {
  const chunks: T[][] = []
  for (let start = 0; start < items.length; start += size) chunks.push(items.slice(start, start + size))
  return chunks
}

/**
 * Pairs of ids that are different events but that a database may fold into one: a
 * case-insensitive collation (`Order-1`/`order-1`, titlecase `ǅ`/uppercase `Ǆ`), a collation
 * or normalisation that equates NFC `é` with NFD `é`, or one that expands `ß` to `ss`.
 */
export const FOLDED_PAIRS: readonly (readonly [string, string])[] = [
  ['Order-1', 'order-1'],
  ['caf\u00e9-1', 'cafe\u0301-1'],
  ['stra\u00dfe-1', 'strasse-1'],
  ['\u01c5-1', '\u01c4-1'],
]
