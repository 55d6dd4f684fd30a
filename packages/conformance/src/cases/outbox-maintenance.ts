import { expectEqual, expectIds, expectNoLease, expectSame, storedOutbox } from '../assertions.js'
import { defineCase } from '../case.js'
import { chunk, outboxEvent, outboxEvents } from '../events.js'

const DAY = 86_400_000
const MINUTE = 60_000

export const outboxMaintenanceCases = [
  defineCase({
    id: 'outbox.cleanup.sent-only',
    title: 'cleanup deletes sent events older than the cutoff and never touches other statuses',
    async run({ store, clock }) {
      const t0 = clock.peekMs()
      await store.outbox.findOrCreateMany(
        ['old-sent', 'pending', 'failed', 'publishing', 'new-sent', 'edge-sent'].map((id) => outboxEvent(id)),
      )
      await store.outbox.markAsSent('old-sent')
      await store.outbox.markAsFailed('failed', 'dead')
      await store.outbox.markAsPublishing('publishing')
      clock.set(t0 + DAY)
      await store.outbox.markAsSent('edge-sent')
      clock.set(t0 + 2 * DAY)
      await store.outbox.markAsSent('new-sent')
      clock.set(t0 + 3 * DAY)
      expectSame(
        await store.outbox.cleanup(2),
        1,
        'one sent event is older than 2 days (the one sent exactly at the cutoff stays)',
      )
      expectSame(await store.oracle.outbox('old-sent'), null, 'oracle: the old sent event is gone')
      for (const id of ['pending', 'failed', 'publishing', 'new-sent', 'edge-sent']) {
        await storedOutbox(store, id)
      }
      expectSame(await store.outbox.cleanup(2), 0, 'a second cleanup finds nothing')
      expectSame(
        await store.outbox.cleanup(0.5),
        2,
        'fractional days: everything sent before 2.5 days is deleted',
      )
      expectSame(await store.oracle.outboxCount(), 3, 'oracle: pending, failed and publishing remain')
      expectSame(await store.outbox.cleanup(0), 0, 'unsent events are never deleted')
    },
  }),
  defineCase({
    id: 'outbox.cleanup.batches',
    title: 'cleanup removes more rows than one batch holds and returns the exact count',
    async run({ store, clock }) {
      const events = outboxEvents(1_200, 'bulk')
      for (const batch of chunk(events, 200)) {
        await store.outbox.findOrCreateMany(batch)
        const unapplied = await store.outbox.markManyAsSent(batch.map((event) => event.eventId))
        expectEqual(unapplied, [], 'every stored event is marked sent')
      }
      await store.outbox.findOrCreate(outboxEvent('survivor'))
      clock.advance(DAY + 1)
      expectSame(await store.outbox.cleanup(1), 1_200, 'all 1,200 sent events are deleted')
      expectSame(await store.oracle.outboxCount(), 1, 'oracle: only the pending event remains')
      expectSame((await store.outbox.getCountByStatus()).sent, 0, 'no sent event is counted')
    },
  }),
  defineCase({
    id: 'outbox.reset-stale.claim-time-not-enqueue-time',
    title: 'resetStale resets by claim time, never by enqueue time',
    async run({ store, clock }) {
      const t0 = clock.peekMs()
      // Not due until +55 min, so the claim at +50 min takes the other event first.
      await store.outbox.findOrCreate(
        outboxEvent('enqueued-long-ago', { availableAt: new Date(t0 + 55 * MINUTE) }),
      )
      clock.set(t0 + 50 * MINUTE)
      await store.outbox.findOrCreate(outboxEvent('claimed-long-ago'))
      await store.outbox.claim({ limit: 1, leaseMs: 3_600_000, workerId: 'w-old' })
      clock.set(t0 + 60 * MINUTE)
      await store.outbox.claim({ limit: 1, leaseMs: 3_600_000, workerId: 'w-new' })
      await store.outbox.findOrCreate(outboxEvent('still-pending'))
      clock.set(t0 + 66 * MINUTE)
      expectSame(
        await store.outbox.resetStale(10),
        1,
        'only the event claimed more than 10 minutes ago is reset',
      )
      const reset = await storedOutbox(store, 'claimed-long-ago')
      expectSame(reset.status, 'pending', 'oracle: the stale claim is pending again')
      expectNoLease(reset, 'oracle: the stale claim')
      expectSame(reset.availableAt.getTime(), t0 + 50 * MINUTE, 'oracle: availableAt unchanged')
      const live = await storedOutbox(store, 'enqueued-long-ago')
      expectSame(
        live.status,
        'publishing',
        'oracle: an event enqueued long ago but claimed recently is left alone',
      )
      expectSame(live.claimedBy, 'w-new', 'oracle: still held by its worker')
      clock.set(t0 + 70 * MINUTE)
      expectSame(await store.outbox.resetStale(10), 0, 'a claim exactly at the cutoff is not stale')
      expectSame(await store.outbox.resetStale(9.5), 1, 'fractional minutes')
      expectSame(
        (await storedOutbox(store, 'still-pending')).status,
        'pending',
        'oracle: pending events are untouched',
      )
    },
  }),
  defineCase({
    id: 'outbox.cleanup.exact-cutoff',
    title:
      'cleanup with fractional days deletes sent events 1 ms before the cutoff and keeps those at or after it',
    async run({ store, clock }) {
      const now = clock.peekMs() + 2 * DAY
      // [id, sentAt]: each side of now - 1.5 days and of now - 0.5 day, in time order.
      const sent: [string, number][] = [
        ['before-1.5d', now - 1.5 * DAY - 1],
        ['at-1.5d', now - 1.5 * DAY],
        ['before-0.5d', now - 0.5 * DAY - 1],
        ['at-0.5d', now - 0.5 * DAY],
        ['after-0.5d', now - 0.5 * DAY + 1],
      ]
      await store.outbox.findOrCreateMany(sent.map(([id]) => outboxEvent(id)))
      for (const [id, sentAt] of sent) {
        clock.set(sentAt)
        await store.outbox.markAsSent(id)
        expectSame((await storedOutbox(store, id)).sentAt?.getTime(), sentAt, `oracle: ${id} sentAt`)
      }
      clock.set(now)
      expectSame(
        await store.outbox.cleanup(1.5),
        1,
        'cleanup(1.5) deletes only the event sent 1 ms before now - 36 h',
      )
      expectSame(await store.oracle.outbox('before-1.5d'), null, 'oracle: before-1.5d deleted')
      expectSame(await store.oracle.outboxCount(), 4, 'oracle: the event sent exactly at the cutoff stays')
      expectSame(await store.outbox.cleanup(0.5), 2, 'cleanup(0.5) deletes what was sent before now - 12 h')
      for (const id of ['at-1.5d', 'before-0.5d'])
        expectSame(await store.oracle.outbox(id), null, `oracle: ${id} deleted`)
      for (const id of ['at-0.5d', 'after-0.5d']) await storedOutbox(store, id)
      clock.advance(1)
      expectSame(await store.outbox.cleanup(0.5), 1, '1 ms later the event sent at the old cutoff goes')
      expectSame(await store.oracle.outbox('at-0.5d'), null, 'oracle: at-0.5d deleted')
      await storedOutbox(store, 'after-0.5d')
    },
  }),
  defineCase({
    id: 'outbox.reset-stale.exact-cutoff',
    title:
      'resetStale with fractional minutes resets claims 1 ms older than the cutoff and keeps those at or after it',
    async run({ store, clock }) {
      const now = clock.peekMs() + 10 * MINUTE
      // [id, claimedAt]: each side of now - 90 s and of now - 30 s, in time order.
      const claims: [string, number][] = [
        ['before-1.5m', now - 1.5 * MINUTE - 1],
        ['at-1.5m', now - 1.5 * MINUTE],
        ['before-0.5m', now - 0.5 * MINUTE - 1],
        ['at-0.5m', now - 0.5 * MINUTE],
        ['after-0.5m', now - 0.5 * MINUTE + 1],
      ]
      // Each event is enqueued when it is claimed, so claim and enqueue times agree and only
      // the cutoff's arithmetic is under test (claim-time-not-enqueue-time tells them apart).
      for (const [id, claimedAt] of claims) {
        clock.set(claimedAt)
        await store.outbox.findOrCreate(outboxEvent(id))
        expectIds(
          await store.outbox.claim({ limit: 1, leaseMs: 3_600_000, workerId: `w-${id}` }),
          [id],
          `claim of ${id}`,
        )
      }
      clock.set(now)
      expectSame(
        await store.outbox.resetStale(1.5),
        1,
        'resetStale(1.5) resets only the claim 1 ms before now - 90 s',
      )
      expectSame((await storedOutbox(store, 'before-1.5m')).status, 'pending', 'oracle: before-1.5m reset')
      expectSame(
        (await storedOutbox(store, 'at-1.5m')).status,
        'publishing',
        'oracle: a claim exactly at the cutoff stays',
      )
      expectSame(await store.outbox.resetStale(0.5), 2, 'resetStale(0.5) resets the claims before now - 30 s')
      for (const id of ['at-1.5m', 'before-0.5m'])
        expectSame((await storedOutbox(store, id)).status, 'pending', `oracle: ${id} reset`)
      for (const id of ['at-0.5m', 'after-0.5m']) {
        const live = await storedOutbox(store, id)
        expectSame(live.status, 'publishing', `oracle: ${id} still publishing`)
        expectSame(live.claimedBy, `w-${id}`, `oracle: ${id} still held`)
      }
      clock.advance(1)
      expectSame(await store.outbox.resetStale(0.5), 1, '1 ms later the claim at the old cutoff is stale')
      expectSame(
        (await storedOutbox(store, 'after-0.5m')).status,
        'publishing',
        'oracle: after-0.5m still publishing',
      )
    },
  }),
  defineCase({
    id: 'outbox.reset-stale.live-claims-untouched',
    title:
      'resetStale moves only claims older than the cutoff: a reclaimed or expired-but-recent claim is left exactly as it is',
    async run({ store, clock }) {
      const t0 = clock.peekMs()
      await store.outbox.findOrCreate(outboxEvent('stale'))
      await store.outbox.claim({ limit: 1, leaseMs: 2 * 3_600_000, workerId: 'w-stale' })
      await store.outbox.findOrCreate(outboxEvent('reclaimed'))
      await store.outbox.claim({ limit: 1, leaseMs: 1_000, workerId: 'w-first' })
      expectSame(await store.outbox.resetStale(0), 0, 'a claim made this millisecond is never stale')
      clock.set(t0 + 25 * MINUTE)
      // The first lease on `reclaimed` ran out: a second worker takes it over now.
      const [takeover] = await store.outbox.claim({ limit: 1, leaseMs: 3_600_000, workerId: 'w-second' })
      expectSame(takeover?.eventId, 'reclaimed', 'the expired lease is reclaimed')
      expectSame(takeover?.claimedAt?.getTime(), clock.peekMs(), 'the reclaim records its own claim time')
      await store.outbox.findOrCreate(outboxEvent('short-lease'))
      await store.outbox.claim({ limit: 1, leaseMs: 1_000, workerId: 'w-short' })
      const live = ['reclaimed', 'short-lease']
      const before = await Promise.all(live.map((id) => storedOutbox(store, id)))
      expectSame(before[0]?.claimedAt?.getTime(), t0 + 25 * MINUTE, 'oracle: the reclaim time is stored')
      clock.set(t0 + 30 * MINUTE)
      expectSame(await store.outbox.resetStale(10), 1, 'only the claim made 30 minutes ago is stale')
      const reset = await storedOutbox(store, 'stale')
      expectSame(reset.status, 'pending', 'oracle: the stale claim is pending again')
      expectNoLease(reset, 'oracle: the stale claim')
      expectEqual(
        await Promise.all(live.map((id) => storedOutbox(store, id))),
        before,
        'oracle: the claims made 5 minutes ago (one of them with an expired lease) are untouched',
      )
      await store.outbox.markAsSent('reclaimed', { workerId: 'w-second' })
      expectSame(
        (await storedOutbox(store, 'reclaimed')).status,
        'sent',
        'oracle: its holder still completes it',
      )
    },
  }),
  defineCase({
    id: 'outbox.counts.all-statuses',
    title: 'getCountByStatus returns all four statuses, zeros included',
    async run({ store }) {
      expectEqual(
        await store.outbox.getCountByStatus(),
        { pending: 0, publishing: 0, sent: 0, failed: 0 },
        'an empty outbox',
      )
      await store.outbox.findOrCreateMany(['c1', 'c2', 'c3', 'c4', 'c5'].map((id) => outboxEvent(id)))
      await store.outbox.claim({ limit: 3, leaseMs: 60_000, workerId: 'w' })
      await store.outbox.markAsSent('c1', { workerId: 'w' })
      await store.outbox.markAsFailed('c2', 'dead', { workerId: 'w' })
      expectEqual(
        await store.outbox.getCountByStatus(),
        { pending: 2, publishing: 1, sent: 1, failed: 1 },
        'one of each, two pending',
      )
      expectSame(await store.oracle.outboxCount(), 5, 'oracle: five rows')
      expectSame((await storedOutbox(store, 'c3')).status, 'publishing', 'oracle: c3 publishing')
    },
  }),
]
