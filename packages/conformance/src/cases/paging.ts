import { expectEqual, expectSame, storedOutbox } from '../assertions.js'
import { defineCase } from '../case.js'
import { chunk, inboxEvent, outboxEvent, scrambledId } from '../events.js'

const MINUTE = 60_000
const DAY = 86_400_000

/**
 * Events per paging case: one full page and part of a second. Every adapter of ours works
 * through maintenance in pages of 1,000 (SQL cleanup batches, Redis and MongoDB batches,
 * DynamoDB index pages, which a claim reads from a smaller first page up to 1,000), and a
 * MongoDB cursor returns 101 documents before its first getMore, so a store that stops
 * after its first page is caught. Kept that small on purpose: on FerretDB every claimed,
 * reset or processed document is its own write (about 5 ms each), and DynamoDB's 1 MB
 * `Select COUNT` pages (about 10,000 index entries) are out of reach at any CI-sized count.
 */
const PAGED_EVENTS = 1_100
/** About 2 KB per event, so a store's byte-bounded pages (MongoDB, DynamoDB) fill too. */
const pagedPayload = (eventId: string): string => JSON.stringify({ id: eventId, pad: 'p'.repeat(2_000) })
/** Calls in flight at once where the API has no bulk form (the inbox). */
const CONCURRENCY = 50

const ids = (tag: string): string[] =>
  Array.from({ length: PAGED_EVENTS }, (_, index) => scrambledId(index, tag))

/** Runs `action` for every item, `CONCURRENCY` at a time, in input order. */
const eachConcurrently = async <T>(items: readonly T[], action: (item: T) => Promise<unknown>) => {
  for (const batch of chunk(items, CONCURRENCY)) await Promise.all(batch.map(action))
}

export const pagingCases = [
  defineCase({
    id: 'outbox.paging.many-pages',
    title: `claim, resetStale and counts each handle ${PAGED_EVENTS} events of 2 KB, more than one page of the store`,
    async run({ store, clock }) {
      const o = store.outbox
      const all = ids('page')
      for (const batch of chunk(all, 500))
        await o.findOrCreateMany(batch.map((id) => outboxEvent(id, { payload: pagedPayload(id) })))
      expectEqual(
        await o.getCountByStatus(),
        { pending: PAGED_EVENTS, publishing: 0, sent: 0, failed: 0 },
        'every event is counted pending',
      )
      // Compared as sets: order is outbox.order's business, this case is about reaching the end.
      const sorted = [...all].sort()
      const idsOf = (events: readonly { eventId: string }[]) => events.map((event) => event.eventId).sort()
      expectEqual(idsOf(await o.findPending({ limit: 10_000 })), sorted, 'findPending lists every event')
      const lease = { limit: 10_000, leaseMs: 60 * MINUTE, workerId: 'w-pages' }
      expectEqual(idsOf(await o.claim(lease)), sorted, 'one claim takes every event')
      expectSame((await o.getCountByStatus()).publishing, PAGED_EVENTS, 'every event is counted publishing')
      clock.advance(10 * MINUTE)
      expectSame(await o.resetStale(5), PAGED_EVENTS, 'resetStale resets every stale claim')
      expectSame((await o.getCountByStatus()).pending, PAGED_EVENTS, 'every event is pending again')
      const last = all.at(-1) ?? ''
      expectSame((await storedOutbox(store, last)).status, 'pending', 'oracle: the last event was reset too')
      // Cleanup past one batch is outbox.cleanup.batches' business.
    },
  }),
  defineCase({
    id: 'inbox.paging.many-pages',
    title: `inbox resetStale, counts, getFailedEvents and cleanup each handle ${PAGED_EVENTS} messages of 2 KB`,
    async run({ store, clock }) {
      const i = store.inbox
      const all = ids('inpage')
      for (const batch of chunk(all, CONCURRENCY)) {
        await Promise.all(batch.map((id) => i.findOrCreate(inboxEvent(id, { payload: pagedPayload(id) }))))
        clock.advance(1)
      }
      expectEqual(
        await i.getCountByStatus(),
        { processing: PAGED_EVENTS, processed: 0, failed: 0 },
        'every message is counted processing',
      )
      clock.advance(10 * MINUTE)
      expectSame(await i.resetStale(5), PAGED_EVENTS, 'resetStale times out every message')
      expectSame((await i.getCountByStatus()).failed, PAGED_EVENTS, 'every message is counted failed')
      const failed = await i.getFailedEvents(10_000)
      expectEqual(
        failed.map((event) => event.eventId).sort(),
        [...all].sort(),
        'getFailedEvents lists every failed message',
      )
      const received = failed.map((event) => event.receivedAt.getTime())
      expectSame(
        received.every((time, index) => index === 0 || (received[index - 1] ?? time) <= time),
        true,
        'getFailedEvents lists them oldest first',
      )
      await eachConcurrently(all, (id) => i.markAsProcessed(id))
      expectSame((await i.getCountByStatus()).processed, PAGED_EVENTS, 'every message is counted processed')
      clock.advance(DAY + 1)
      expectSame(await i.cleanup(1), PAGED_EVENTS, 'cleanup deletes every processed message')
      expectSame(await store.oracle.inboxCount(), 0, 'oracle: nothing is left')
    },
  }),
]
