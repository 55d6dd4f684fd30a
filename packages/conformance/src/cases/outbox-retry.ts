import { expectIds, expectNoLease, expectSame, expectTxboxError, storedOutbox } from '../assertions.js'
import { defineCase } from '../case.js'
import { outboxEvent } from '../events.js'

const LEASE = { leaseMs: 60_000, workerId: 'retry-worker' }

export const outboxRetryCases = [
  defineCase({
    id: 'outbox.retry.backoff-honoured',
    title: 'retryLater persists the backoff: the event is not due again before availableAt',
    async run({ store, clock }) {
      await store.outbox.findOrCreate(outboxEvent('flaky'))
      await store.outbox.claim({ limit: 1, ...LEASE })
      const t0 = clock.peekMs()
      await store.outbox.retryLater('flaky', {
        errorMessage: 'broker down',
        delayMs: 5_000,
        workerId: LEASE.workerId,
      })
      const stored = await storedOutbox(store, 'flaky')
      expectSame(stored.status, 'pending', 'oracle: back to pending')
      expectSame(stored.retryCount, 1, 'oracle: retryCount + 1')
      expectSame(stored.errorMessage, 'broker down', 'oracle: errorMessage stored')
      expectSame(stored.availableAt.getTime(), t0 + 5_000, 'oracle: availableAt = now + delayMs')
      expectNoLease(stored, 'oracle: retried event')
      expectIds(await store.outbox.findPending(), [], 'not pending-due before the backoff')
      expectIds(await store.outbox.claim({ limit: 10, ...LEASE }), [], 'not claimable before the backoff')
      clock.advance(4_999)
      expectIds(
        await store.outbox.claim({ limit: 10, ...LEASE }),
        [],
        'not claimable 1 ms before the backoff ends',
      )
      clock.advance(1)
      expectIds(await store.outbox.findPending(), ['flaky'], 'due again when the backoff ends')
      expectIds(
        await store.outbox.claim({ limit: 10, ...LEASE }),
        ['flaky'],
        'claimable when the backoff ends',
      )
      await store.outbox.retryLater('flaky', { errorMessage: 'again', delayMs: 0 })
      expectSame(
        (await storedOutbox(store, 'flaky')).retryCount,
        2,
        'oracle: retryCount counts every failure',
      )
      await expectTxboxError(
        'EventNotFoundError',
        () => store.outbox.retryLater('not-stored', { errorMessage: 'x', delayMs: 1 }),
        'retryLater of an unknown id',
      )
    },
  }),
  defineCase({
    id: 'outbox.retry.dead-letter',
    title: 'markAsFailed dead-letters an event: listed oldest first, never claimed',
    async run({ store, clock }) {
      await store.outbox.findOrCreateMany([
        outboxEvent('older'),
        outboxEvent('healthy'),
        outboxEvent('newer'),
      ])
      await store.outbox.claim({ limit: 10, ...LEASE })
      clock.advance(1_000)
      await store.outbox.markAsFailed('newer', 'poison', { workerId: LEASE.workerId })
      await store.outbox.markAsFailed('older', 'bad schema')
      const dead = await storedOutbox(store, 'older')
      expectSame(dead.status, 'failed', 'oracle: failed')
      expectSame(dead.errorMessage, 'bad schema', 'oracle: errorMessage')
      expectSame(dead.retryCount, 1, 'oracle: retryCount + 1')
      expectNoLease(dead, 'oracle: dead letter')
      expectIds(
        await store.outbox.getFailedEvents(),
        ['older', 'newer'],
        'dead letters oldest enqueued first',
      )
      expectIds(await store.outbox.getFailedEvents(1), ['older'], 'limit applies')
      clock.advance(3_600_000)
      expectIds(
        await store.outbox.claim({ limit: 10, ...LEASE }),
        ['healthy'],
        'dead letters are never claimed',
      )
      expectSame((await store.outbox.getCountByStatus()).failed, 2, 'counted as failed')
    },
  }),
  defineCase({
    id: 'outbox.retry.requeue',
    title: 'requeueFailed moves dead letters back to pending, due now, and counts only those',
    async run({ store, clock }) {
      await store.outbox.findOrCreateMany([outboxEvent('dead'), outboxEvent('alive')])
      await store.outbox.markAsFailed('dead', 'poison')
      clock.advance(60_000)
      expectSame(await store.outbox.requeueFailed(['dead', 'alive']), 1, 'only the failed event is requeued')
      const requeued = await storedOutbox(store, 'dead')
      expectSame(requeued.status, 'pending', 'oracle: pending')
      expectSame(requeued.availableAt.getTime(), clock.peekMs(), 'oracle: due now')
      expectSame(requeued.retryCount, 0, 'oracle: retryCount starts again at 0')
      expectIds(
        await store.outbox.claim({ limit: 10, ...LEASE }),
        ['dead', 'alive'],
        'requeued events are claimable',
      )
      expectSame(await store.outbox.requeueFailed([]), 0, 'an empty list requeues nothing')
      await expectTxboxError(
        'EventNotFoundError',
        () => store.outbox.requeueFailed(['not-stored']),
        'requeue of an unknown id',
      )
    },
  }),
]
