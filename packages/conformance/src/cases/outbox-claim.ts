import type { OutboxEvent } from '@txbox/core'
import { expectIds, expectNoLease, expectSame, expectTxboxError, storedOutbox } from '../assertions.js'
import { defineCase } from '../case.js'
import { chunk, outboxEvent, outboxEvents } from '../events.js'

export const outboxClaimCases = [
  defineCase({
    id: 'outbox.claim.disjoint-concurrent',
    title: '8 concurrent claimers over 500 events: disjoint results whose union is every event',
    async run({ store }) {
      const events = outboxEvents(500, 'disjoint')
      for (const batch of chunk(events, 100)) await store.outbox.findOrCreateMany(batch)
      const claimedBy = new Map<string, string>()
      const duplicates: string[] = []
      const worker = async (workerId: string) => {
        for (;;) {
          const claimed = await store.outbox.claim({ limit: 25, leaseMs: 600_000, workerId })
          if (claimed.length === 0) return
          for (const event of claimed) {
            if (claimedBy.has(event.eventId)) duplicates.push(event.eventId)
            claimedBy.set(event.eventId, workerId)
            expectSame(event.claimedBy, workerId, 'a claimed event names its worker')
            expectSame(event.status, 'publishing', 'a claimed event is publishing')
          }
        }
      }
      await Promise.all(Array.from({ length: 8 }, (_, index) => worker(`worker-${index}`)))
      expectSame(
        duplicates.length,
        0,
        `no event is claimed twice (claimed twice: ${duplicates.slice(0, 5).join(', ')})`,
      )
      expectSame(claimedBy.size, 500, 'every event is claimed')
      for (const event of events) {
        const stored = await storedOutbox(store, event.eventId)
        expectSame(stored.status, 'publishing', `oracle: ${event.eventId} is publishing`)
        expectSame(
          stored.claimedBy,
          claimedBy.get(event.eventId),
          `oracle: ${event.eventId} is held by the worker that got it`,
        )
      }
    },
  }),
  defineCase({
    id: 'outbox.claim.lease-expiry-reclaim',
    title: 'an expired lease is claimable again (no reaper needed); a live one is not',
    async run({ store, clock }) {
      await store.outbox.findOrCreate(outboxEvent('leased'))
      const t0 = clock.peekMs()
      const [claimed] = await store.outbox.claim({ limit: 10, leaseMs: 1_000, workerId: 'w1' })
      expectSame(claimed?.eventId, 'leased', 'w1 claims the event')
      expectSame(claimed?.claimedAt?.getTime(), t0, 'claimedAt = now')
      expectSame(claimed?.leaseUntil?.getTime(), t0 + 1_000, 'leaseUntil = now + leaseMs')
      const stored = await storedOutbox(store, 'leased')
      expectSame(stored.claimedBy, 'w1', 'oracle: claimedBy w1')
      expectSame(stored.leaseUntil?.getTime(), t0 + 1_000, 'oracle: leaseUntil stored')
      clock.advance(999)
      expectIds(
        await store.outbox.claim({ limit: 10, leaseMs: 1_000, workerId: 'w2' }),
        [],
        'a live lease is not claimable',
      )
      clock.advance(1)
      const [reclaimed] = await store.outbox.claim({ limit: 10, leaseMs: 1_000, workerId: 'w2' })
      expectSame(reclaimed?.eventId, 'leased', 'the lease expired at leaseUntil: w2 reclaims it')
      expectSame(reclaimed?.leaseUntil?.getTime(), t0 + 2_000, 'the new lease runs from now')
      expectSame((await storedOutbox(store, 'leased')).claimedBy, 'w2', 'oracle: claimedBy w2')

      await store.outbox.findOrCreate(outboxEvent('manual'))
      await store.outbox.markAsPublishing('manual')
      const manual = await storedOutbox(store, 'manual')
      expectSame(manual.status, 'publishing', 'oracle: markAsPublishing sets publishing')
      expectSame(manual.claimedAt?.getTime(), clock.peekMs(), 'oracle: markAsPublishing sets claimedAt')
      clock.advance(3_600_000)
      const later = await store.outbox.claim({ limit: 10, leaseMs: 1_000, workerId: 'w3' })
      expectIds(
        later,
        ['leased'],
        'an event marked publishing without a lease is never claimed (only resetStale frees it)',
      )
    },
  }),
  defineCase({
    id: 'outbox.claim.limit-counts-expired',
    title: 'the limit bounds the whole claim: expired leases and due pending events together',
    async run({ store, clock }) {
      const expiring = outboxEvents(3, 'expiring').map((event) => event.eventId)
      const due = outboxEvents(3, 'due').map((event) => event.eventId)
      await store.outbox.findOrCreateMany(outboxEvents(3, 'expiring'))
      expectIds(
        await store.outbox.claim({ limit: 10, leaseMs: 1_000, workerId: 'w1' }),
        expiring,
        'w1 claims the first three',
      )
      await store.outbox.findOrCreateMany(outboxEvents(3, 'due'))
      clock.advance(1_000)
      // Six are claimable now: three expired leases, three due pending events.
      expectIds(
        await store.outbox.claim({ limit: 4, leaseMs: 1_000, workerId: 'w2' }),
        [...expiring, due[0] as string],
        'a claim of 4 takes 4 of the 6 claimable events, in enqueue order',
      )
      expectIds(
        await store.outbox.claim({ limit: 10, leaseMs: 1_000, workerId: 'w3' }),
        due.slice(1),
        'the next claim takes the two left',
      )
    },
  }),
  defineCase({
    id: 'outbox.claim.fencing',
    title: 'a worker that lost its lease cannot mark, fail or retry the event; the new holder can',
    async run({ store, clock }) {
      await store.outbox.findOrCreate(outboxEvent('fenced'))
      await store.outbox.claim({ limit: 1, leaseMs: 1_000, workerId: 'w1' })
      clock.advance(1_000)
      await store.outbox.claim({ limit: 1, leaseMs: 1_000, workerId: 'w2' })
      await expectTxboxError(
        'LeaseLostError',
        () => store.outbox.markAsSent('fenced', { workerId: 'w1' }),
        'markAsSent by w1',
      )
      await expectTxboxError(
        'LeaseLostError',
        () => store.outbox.markAsFailed('fenced', 'x', { workerId: 'w1' }),
        'markAsFailed by w1',
      )
      await expectTxboxError(
        'LeaseLostError',
        () => store.outbox.retryLater('fenced', { errorMessage: 'x', delayMs: 10, workerId: 'w1' }),
        'retryLater by w1',
      )
      expectIds(
        await store.outbox.markManyAsSent(['fenced'], { workerId: 'w1' }),
        ['fenced'],
        'markManyAsSent by w1 is not applied',
      )
      const held = await storedOutbox(store, 'fenced')
      expectSame(held.status, 'publishing', 'oracle: still publishing after the fenced writes')
      expectSame(held.claimedBy, 'w2', 'oracle: still held by w2')
      expectSame(held.retryCount, 0, 'oracle: retryCount untouched')
      clock.advance(10)
      expectIds(
        await store.outbox.markManyAsSent(['fenced', 'not-stored'], { workerId: 'w2' }),
        ['not-stored'],
        'the holder marks it sent; an id that is not stored is reported as not applied',
      )
      const sent = await storedOutbox(store, 'fenced')
      expectSame(sent.status, 'sent', 'oracle: sent')
      expectSame(sent.sentAt?.getTime(), clock.peekMs(), 'oracle: sentAt = now')
      expectNoLease(sent, 'oracle: sent event')
      await expectTxboxError(
        'LeaseLostError',
        () => store.outbox.markAsSent('fenced', { workerId: 'w2' }),
        'a sent event is not held',
      )

      await store.outbox.findOrCreate(outboxEvent('unfenced'))
      await store.outbox.markAsSent('unfenced')
      expectSame(
        (await storedOutbox(store, 'unfenced')).status,
        'sent',
        'oracle: markAsSent without workerId applies',
      )
    },
  }),
  defineCase({
    id: 'outbox.claim.renew-lease',
    title: 'renewLease extends only the leases the worker still holds and reports which',
    async run({ store, clock }) {
      await store.outbox.findOrCreateMany([outboxEvent('r1'), outboxEvent('r2')])
      const t0 = clock.peekMs()
      await store.outbox.claim({ limit: 10, leaseMs: 1_000, workerId: 'w1' })
      clock.advance(800)
      const renewed = await store.outbox.renewLease(['r1', 'r2', 'not-stored'], {
        workerId: 'w1',
        leaseMs: 1_000,
      })
      expectIds(renewed, ['r1', 'r2'], 'both held leases are renewed')
      expectSame(
        (await storedOutbox(store, 'r1')).leaseUntil?.getTime(),
        t0 + 1_800,
        'oracle: leaseUntil = now + leaseMs',
      )
      clock.advance(500)
      expectIds(
        await store.outbox.claim({ limit: 10, leaseMs: 1_000, workerId: 'w2' }),
        [],
        'renewed leases are live',
      )
      expectIds(
        await store.outbox.renewLease(['r1'], { workerId: 'w2', leaseMs: 1_000 }),
        [],
        'w2 holds nothing to renew',
      )
      clock.advance(500)
      const taken: OutboxEvent[] = await store.outbox.claim({ limit: 10, leaseMs: 1_000, workerId: 'w2' })
      expectIds(taken, ['r1', 'r2'], 'after the renewed lease expires w2 takes both')
      expectIds(
        await store.outbox.renewLease(['r1', 'r2'], { workerId: 'w1', leaseMs: 1_000 }),
        [],
        'w1 lost both',
      )
      expectSame((await storedOutbox(store, 'r2')).claimedBy, 'w2', 'oracle: held by w2')
    },
  }),
  defineCase({
    id: 'outbox.claim.sent-batch-stays-sent',
    title:
      'a batch marked sent stays sent: long after its lease and any stale cutoff, no claim takes it again, resetStale resets none of it, renewLease holds none of it, and its lease is cleared',
    async run({ store, clock }) {
      const ids = ['s1', 's2', 's3']
      await store.outbox.findOrCreateMany(ids.map((id) => outboxEvent(id)))
      expectIds(
        await store.outbox.claim({ limit: 10, leaseMs: 1_000, workerId: 'w' }),
        ids,
        'the batch is claimed',
      )
      expectIds(
        await store.outbox.markManyAsSent(ids, { workerId: 'w' }),
        [],
        'the whole batch is marked sent',
      )
      clock.advance(2 * 60 * 60 * 1_000)
      expectIds(
        await store.outbox.claim({ limit: 10, leaseMs: 1_000, workerId: 'w2' }),
        [],
        'a claim long after the lease takes nothing sent',
      )
      expectSame(await store.outbox.resetStale(1), 0, 'resetStale resets nothing sent')
      expectIds(
        await store.outbox.renewLease(ids, { workerId: 'w', leaseMs: 1_000 }),
        [],
        'the worker holds nothing it marked sent',
      )
      for (const id of ids) {
        const row = await storedOutbox(store, id)
        expectSame(row.status, 'sent', `oracle: ${id} is still sent`)
        expectNoLease(row, `oracle: ${id}`)
      }
      const counts = await store.outbox.getCountByStatus()
      expectSame(counts.sent, 3, 'counts: 3 sent')
      expectSame(counts.publishing, 0, 'counts: none publishing')
      expectSame(counts.pending, 0, 'counts: none pending')
    },
  }),
]
