import type { StoreKind } from '@txbox/core'

/** What a hand-written relay reads back from its claim: enough to publish the event. */
export interface RawEvent {
  readonly eventId: string
  readonly subject: string
  readonly payload: string
  readonly headers?: string | undefined
}

/**
 * The two statements a minimal hand-written relay sends, on the adapter's own tables: claim
 * up to `limit` due events with a lease, and mark the acknowledged ones sent. The drain
 * scenarios' raw baseline runs the same two, back to back, without publishing in between.
 */
export interface RawOutbox {
  claim(workerId: string, limit: number): Promise<RawEvent[]>
  markSent(workerId: string, eventIds: readonly string[]): Promise<void>
}

/** How long a raw claim holds its events: longer than any bench run, so no lease ever expires. */
export const RAW_LEASE_MS = 60_000

/** The drain scenarios' raw claimer: one claim, then its mark; returns how many it claimed. */
export const claimThenMark = async (outbox: RawOutbox, workerId: string, limit: number): Promise<number> => {
  const events = await outbox.claim(workerId, limit)
  if (events.length > 0)
    await outbox.markSent(
      workerId,
      events.map((event) => event.eventId),
    )
  return events.length
}

/**
 * Where a relay process finds a namespace the parent created: plain JSON, passed on the
 * child's command line. Every store has one (the txbox relay runs on all of them).
 */
export type RelayEndpoint =
  | { readonly store: 'postgres'; readonly url: string; readonly schema: string }
  | { readonly store: 'sqlite'; readonly file: string; readonly prefix: string }
  | {
      readonly store: Exclude<StoreKind, 'postgres' | 'sqlite'>
      readonly url: string
      readonly prefix: string
    }
