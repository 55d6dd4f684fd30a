import { expectEqual, expectIds, expectSame, storedOutbox } from '../assertions.js'
import { defineCase } from '../case.js'
import { FOLDED_PAIRS, outboxEvent } from '../events.js'

export const outboxIdempotencyCases = [
  defineCase({
    id: 'outbox.idempotency.first-write-wins',
    title: 'findOrCreate of a stored id returns the stored event unchanged; later payloads are ignored',
    async run({ store, clock }) {
      const first = await store.outbox.findOrCreate(outboxEvent('order-1', { payload: 'first' }))
      expectSame(first.status, 'pending', 'a new event is pending')
      expectSame(first.retryCount, 0, 'a new event has retryCount 0')
      expectSame(first.enqueuedAt.getTime(), clock.peekMs(), 'enqueuedAt comes from the injected clock')
      expectSame(first.availableAt.getTime(), clock.peekMs(), 'availableAt defaults to now')
      clock.advance(60_000)
      const second = await store.outbox.findOrCreate(
        outboxEvent('order-1', { payload: 'second', subject: 'other.subject', headers: '{"x":1}' }),
      )
      expectSame(second.payload, 'first', 'the second call returns the first payload')
      expectSame(second.subject, 'orders.created', 'the second call returns the first subject')
      expectSame(second.headers, undefined, 'the second call does not add headers')
      expectSame(second.enqueuedAt.getTime(), first.enqueuedAt.getTime(), 'enqueuedAt is the first one')
      const stored = await storedOutbox(store, 'order-1')
      expectSame(stored.payload, 'first', 'oracle: the stored payload is the first one')
      expectSame(stored.status, 'pending', 'oracle: status pending')
      expectSame(await store.oracle.outboxCount(), 1, 'oracle: exactly one row')
    },
  }),
  defineCase({
    id: 'outbox.idempotency.concurrent-same-id',
    title: '20 concurrent findOrCreate calls with one id store one row and all return the same event',
    async run({ store, clock }) {
      clock.setAutoAdvance(1)
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, index) =>
          store.outbox.findOrCreate(outboxEvent('race-1', { payload: `p${index}` })),
        ),
      )
      clock.setAutoAdvance(0)
      const stored = await storedOutbox(store, 'race-1')
      expectSame(await store.oracle.outboxCount(), 1, 'oracle: one row for 20 concurrent calls')
      for (const [index, result] of results.entries()) {
        expectSame(
          result.enqueuedAt.getTime(),
          stored.enqueuedAt.getTime(),
          `call ${index} returns the stored enqueuedAt`,
        )
        expectSame(result.payload, stored.payload, `call ${index} returns the stored payload`)
      }
    },
  }),
  defineCase({
    id: 'outbox.idempotency.many',
    title: 'findOrCreateMany stores new events, keeps stored ones, and answers in input order',
    async run({ store }) {
      expectEqual(await store.outbox.findOrCreateMany([]), [], 'an empty batch returns []')
      await store.outbox.findOrCreate(outboxEvent('b', { payload: 'old' }))
      const results = await store.outbox.findOrCreateMany([
        outboxEvent('a', { payload: 'a1' }),
        outboxEvent('b', { payload: 'new' }),
        outboxEvent('c', { payload: 'c1', headers: 'h' }),
        outboxEvent('a', { payload: 'a2' }),
      ])
      expectIds(results, ['a', 'b', 'c', 'a'], 'results in input order')
      expectSame(results[1]?.payload, 'old', 'a stored event is returned unchanged')
      expectSame(results[3]?.payload, 'a1', 'a duplicate inside the batch returns the first occurrence')
      expectSame(results[2]?.headers, 'h', 'headers are stored')
      expectSame(await store.oracle.outboxCount(), 3, 'oracle: three rows')
      expectSame((await storedOutbox(store, 'b')).payload, 'old', 'oracle: b kept its first payload')
      expectSame(
        (await storedOutbox(store, 'a')).payload,
        'a1',
        'oracle: a stored once with its first payload',
      )
    },
  }),
  defineCase({
    id: 'outbox.idempotency.folded-ids',
    title:
      'ids (and subjects) that differ only by case, Unicode normalization or ß/ss are different events: both stored, both claimed',
    async run({ store, clock }) {
      const ids = FOLDED_PAIRS.flat()
      const subjectOf = (id: string) => `orders.${id}`
      const event = (id: string) => outboxEvent(id, { subject: subjectOf(id), payload: `payload of ${id}` })
      // Half one call at a time, half in one batch holding both ids of a pair.
      for (const id of ids.slice(0, 4)) {
        const created = await store.outbox.findOrCreate(event(id))
        expectSame(created.eventId, id, `findOrCreate(${JSON.stringify(id)}) returns its own event`)
        expectSame(created.payload, `payload of ${id}`, `findOrCreate(${JSON.stringify(id)}) is new`)
        clock.advance(1)
      }
      const batch = await store.outbox.findOrCreateMany(ids.slice(4).map(event))
      expectIds(batch, ids.slice(4), 'findOrCreateMany returns each id of a pair as its own event')
      expectEqual(
        batch.map((created) => created.payload),
        ids.slice(4).map((id) => `payload of ${id}`),
        'findOrCreateMany creates both ids of a pair',
      )
      expectSame(await store.oracle.outboxCount(), ids.length, 'oracle: one row per id')
      for (const id of ids) {
        const row = await storedOutbox(store, id)
        expectSame(row.eventId, id, `oracle: ${JSON.stringify(id)} stored as given`)
        expectSame(row.subject, subjectOf(id), `oracle: the subject of ${JSON.stringify(id)} stored as given`)
        expectSame(row.payload, `payload of ${id}`, `oracle: ${JSON.stringify(id)} has its own payload`)
        expectSame(
          (await store.outbox.get(id))?.eventId,
          id,
          `get(${JSON.stringify(id)}) finds its own event`,
        )
      }
      const claimed = await store.outbox.claim({ limit: 100, leaseMs: 60_000, workerId: 'w' })
      // Sorted: the batch shares one enqueuedAt, and order is outbox.order's business.
      const byId = [...claimed].sort((a, b) => (a.eventId < b.eventId ? -1 : 1))
      expectIds(byId, [...ids].sort(), 'both ids of every pair are claimed')
      for (const row of byId)
        expectSame(
          row.subject,
          subjectOf(row.eventId),
          `claim: ${JSON.stringify(row.eventId)} has its own subject`,
        )
      for (const [, second] of FOLDED_PAIRS) await store.outbox.markAsSent(second, { workerId: 'w' })
      for (const [first, second] of FOLDED_PAIRS) {
        expectSame(
          (await storedOutbox(store, first)).status,
          'publishing',
          `oracle: marking ${JSON.stringify(second)} sent leaves ${JSON.stringify(first)} alone`,
        )
        expectSame(
          (await storedOutbox(store, second)).status,
          'sent',
          `oracle: ${JSON.stringify(second)} sent`,
        )
      }
    },
  }),
]
