import { INBOX_STATUSES, type InboxCounts, type InboxStatus } from './inbox.js'
import { OUTBOX_STATUSES, type OutboxCounts, type OutboxStatus } from './outbox.js'

/**
 * Builds the counts object with every outbox status present, zeros included, from rows of
 * `(status, count)` as a store's GROUP BY returns them. Unknown statuses are an error:
 * they mean the stored data is not what the adapter wrote.
 */
export const outboxCounts = (rows: Iterable<readonly [string, number | bigint | string]>): OutboxCounts =>
  fillCounts(OUTBOX_STATUSES, rows) as OutboxCounts

/** The inbox twin of {@link outboxCounts}. */
export const inboxCounts = (rows: Iterable<readonly [string, number | bigint | string]>): InboxCounts =>
  fillCounts(INBOX_STATUSES, rows) as InboxCounts

const fillCounts = (
  statuses: readonly (OutboxStatus | InboxStatus)[],
  rows: Iterable<readonly [string, number | bigint | string]>,
): Record<string, number> => {
  const counts: Record<string, number> = Object.fromEntries(statuses.map((status) => [status, 0]))
  for (const [status, count] of rows) {
    if (!(status in counts)) throw new TypeError(`unexpected status in store: ${JSON.stringify(status)}`)
    counts[status] = (counts[status] ?? 0) + Number(count)
  }
  return counts
}
