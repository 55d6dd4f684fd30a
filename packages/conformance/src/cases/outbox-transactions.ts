import { expectEqual, expectIds, expectSame, storedOutbox } from '../assertions.js'
import { defineCase, requiresTransactions } from '../case.js'
import { outboxEvent } from '../events.js'

export const outboxTransactionCases = [
  defineCase({
    id: 'outbox.tx.commit-visible',
    title: "events enqueued with { tx } are stored when the caller's transaction commits",
    skipReason: requiresTransactions,
    async run({ store }) {
      await store.transaction(async (tx) => {
        await store.outbox.findOrCreate(outboxEvent('tx-1'), { tx })
        await store.outbox.findOrCreateMany([outboxEvent('tx-2'), outboxEvent('tx-3')], { tx })
      })
      expectSame((await storedOutbox(store, 'tx-1')).status, 'pending', 'oracle: committed event stored')
      expectSame(await store.oracle.outboxCount(), 3, 'oracle: three rows')
      expectIds(
        await store.outbox.findPending(),
        ['tx-1', 'tx-2', 'tx-3'],
        'committed events are pending in enqueue order',
      )
    },
  }),
  defineCase({
    id: 'outbox.tx.rollback-invisible',
    title: "rolling back the caller's transaction leaves no trace of the event",
    skipReason: requiresTransactions,
    async run({ store }) {
      await store.transaction(
        async (tx) => {
          await store.outbox.findOrCreate(outboxEvent('ghost-1'), { tx })
          await store.outbox.findOrCreateMany([outboxEvent('ghost-2')], { tx })
        },
        { rollback: true },
      )
      let thrown: unknown
      try {
        await store.transaction(async (tx) => {
          await store.outbox.findOrCreate(outboxEvent('ghost-3'), { tx })
          throw new Error('business rule failed')
        })
      } catch (error) {
        thrown = error
      }
      expectSame(
        (thrown as Error | undefined)?.message,
        'business rule failed',
        'the business error reaches the caller',
      )
      for (const id of ['ghost-1', 'ghost-2', 'ghost-3']) {
        expectSame(await store.oracle.outbox(id), null, `oracle: ${id} is not stored`)
        expectSame(await store.outbox.get(id), null, `get(${id}) is null`)
      }
      expectSame(await store.oracle.outboxCount(), 0, 'oracle: no rows')
      expectEqual(await store.outbox.findPending(), [], 'nothing pending')
      expectEqual(
        await store.outbox.getCountByStatus(),
        { pending: 0, publishing: 0, sent: 0, failed: 0 },
        'counts untouched',
      )
      const fresh = await store.outbox.findOrCreate(outboxEvent('ghost-1', { payload: 'real' }))
      expectSame(fresh.payload, 'real', 'the id is free again after the rollback')
    },
  }),
]
