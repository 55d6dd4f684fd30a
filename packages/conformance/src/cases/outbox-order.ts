import { expectIds, expectSame, storedOutbox } from '../assertions.js'
import { defineCase } from '../case.js'
import { outboxEvent, scrambledId } from '../events.js'

const LEASE = { leaseMs: 60_000, workerId: 'order-worker' }

export const outboxOrderCases = [
  defineCase({
    id: 'outbox.order.fifo',
    title: 'findPending returns due pending events in enqueue order, at most limit',
    async run({ store, clock }) {
      const ids: string[] = []
      for (let index = 0; index < 30; index++) {
        const id = scrambledId(index)
        ids.push(id)
        await store.outbox.findOrCreate(outboxEvent(id))
        clock.advance(1)
      }
      expectIds(await store.outbox.findPending({ limit: 100 }), ids, 'all pending events in enqueue order')
      expectIds(await store.outbox.findPending({ limit: 10 }), ids.slice(0, 10), 'the first 10 with limit 10')
      expectIds(await store.outbox.findPending(), ids, 'the default limit (100) covers all 30')
      const stored = await storedOutbox(store, ids[0] ?? '')
      expectSame(stored.status, 'pending', 'oracle: findPending is read-only')
    },
  }),
  defineCase({
    id: 'outbox.order.frozen-clock',
    title: 'with a frozen clock (every enqueuedAt equal) findPending and claim still return enqueue order',
    async run({ store }) {
      const ids = Array.from({ length: 40 }, (_, index) => scrambledId(index, 'frozen'))
      for (const id of ids.slice(0, 30)) await store.outbox.findOrCreate(outboxEvent(id))
      await store.outbox.findOrCreateMany(ids.slice(30).map((id) => outboxEvent(id)))
      const stored = await Promise.all(ids.map((id) => storedOutbox(store, id)))
      expectSame(
        new Set(stored.map((row) => row.enqueuedAt.getTime())).size,
        1,
        'oracle: every enqueuedAt is equal',
      )
      expectIds(await store.outbox.findPending({ limit: 100 }), ids, 'findPending keeps enqueue order')
      expectIds(
        await store.outbox.claim({ limit: 15, ...LEASE }),
        ids.slice(0, 15),
        'claim takes the first 15 in order',
      )
      expectIds(
        await store.outbox.claim({ limit: 100, ...LEASE }),
        ids.slice(15),
        'claim takes the rest in order',
      )
    },
  }),
  defineCase({
    id: 'outbox.order.claim-order',
    title: 'claim returns due events in enqueue order and skips events that are not due yet',
    async run({ store, clock }) {
      const ids = Array.from({ length: 20 }, (_, index) => scrambledId(index, 'claim'))
      const delayed = ids[3] ?? ''
      for (const id of ids) {
        const availableAt = id === delayed ? new Date(clock.peekMs() + 10_000) : undefined
        await store.outbox.findOrCreate(outboxEvent(id, { availableAt }))
      }
      expectSame(
        (await storedOutbox(store, delayed)).availableAt.getTime(),
        clock.peekMs() + 10_000,
        'oracle: availableAt stored',
      )
      const due = ids.filter((id) => id !== delayed)
      expectIds(await store.outbox.findPending(), due, 'findPending leaves out the delayed event')
      expectIds(
        await store.outbox.claim({ limit: 5, ...LEASE }),
        due.slice(0, 5),
        'the first claim takes the first 5 due',
      )
      expectIds(
        await store.outbox.claim({ limit: 100, ...LEASE }),
        due.slice(5),
        'the next claim takes the remaining due ones',
      )
      expectIds(await store.outbox.claim({ limit: 100, ...LEASE }), [], 'nothing due is left')
      clock.advance(9_999)
      expectIds(await store.outbox.claim({ limit: 100, ...LEASE }), [], 'not due 1 ms before availableAt')
      clock.advance(1)
      expectIds(await store.outbox.claim({ limit: 100, ...LEASE }), [delayed], 'due exactly at availableAt')
    },
  }),
  defineCase({
    id: 'outbox.order.not-physical',
    title:
      'enqueue order survives updates, retries, redrives, deletions and an id enqueued again after cleanup, with a frozen clock',
    async run({ store, clock }) {
      const DAY = 86_400_000
      // An id deleted by cleanup and enqueued again is a new event: it goes to the back.
      const recycled = scrambledId(90, 'phys')
      await store.outbox.findOrCreateMany([outboxEvent(recycled), outboxEvent(scrambledId(91, 'phys'))])
      expectIds(await store.outbox.markManyAsSent([recycled, scrambledId(91, 'phys')]), [], 'both sent')
      clock.advance(2 * DAY)
      expectSame(await store.outbox.cleanup(1), 2, 'cleanup deletes both sent events')
      // From here the clock is frozen: only the store's own sequence can tell the order.
      const ids = Array.from({ length: 8 }, (_, index) => scrambledId(index, 'phys'))
      const [p0 = '', p1 = '', p2 = '', p3 = '', p4 = '', p5 = '', p6 = '', p7 = ''] = ids
      for (const id of [p0, p1, p2, p3]) await store.outbox.findOrCreate(outboxEvent(id))
      expectIds(await store.outbox.claim({ limit: 3, ...LEASE }), [p0, p1, p2], 'the first three are claimed')
      await store.outbox.retryLater(p0, { errorMessage: 'retry', delayMs: 0, workerId: LEASE.workerId })
      await store.outbox.markAsFailed(p1, 'dead', { workerId: LEASE.workerId })
      expectSame(await store.outbox.requeueFailed([p1]), 1, 'p1 redriven')
      expectSame(await store.outbox.resetStale(0), 0, 'a claim made now is not stale')
      await store.outbox.retryLater(p2, { errorMessage: 'retry', delayMs: 0, workerId: LEASE.workerId })
      await store.outbox.findOrCreate(outboxEvent(p4))
      await store.outbox.findOrCreate(outboxEvent(recycled, { payload: 'second life' }))
      await store.outbox.findOrCreate(outboxEvent(p5))
      await store.outbox.findOrCreateMany([outboxEvent(p6), outboxEvent(p7)])
      expectSame(
        (await storedOutbox(store, recycled)).payload,
        'second life',
        'oracle: the recycled id is a new event',
      )
      const expected = [p0, p1, p2, p3, p4, recycled, p5, p6, p7]
      expectIds(await store.outbox.findPending({ limit: 100 }), expected, 'findPending keeps enqueue order')
      expectIds(
        await store.outbox.claim({ limit: 4, ...LEASE }),
        expected.slice(0, 4),
        'claim takes the first 4 in order',
      )
      expectIds(
        await store.outbox.claim({ limit: 100, ...LEASE }),
        expected.slice(4),
        'claim takes the rest in order',
      )
    },
  }),
]
