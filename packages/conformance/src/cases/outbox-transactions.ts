import { expectEqual, expectIds, expectSame, storedInbox, storedOutbox } from '../assertions.js'
import { defineCase, requiresTransactions, skipCase } from '../case.js'
import { inboxEvent, outboxEvent } from '../events.js'
import { gate, turns } from './rules-3.js'

/** Why `outbox.tx.store-transaction-joins` is skipped on a fixture without `storeTransaction`. */
export const NO_STORE_TRANSACTION_REASON =
  'the target offers no storeTransaction (the store has no store.transaction)'

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
  defineCase({
    id: 'outbox.tx.store-transaction-joins',
    title:
      'inside store.transaction, findOrCreate, findOrCreateMany and inbox.markAsProcessed without { tx } join it, nested calls too: stored on commit, gone when the function throws',
    skipReason: requiresTransactions,
    async run({ store }) {
      if (store.storeTransaction === undefined) return skipCase(NO_STORE_TRANSACTION_REASON)
      const storeTransaction = store.storeTransaction.bind(store)
      await store.inbox.findOrCreate(inboxEvent('ambient-in'))
      let thrown: unknown
      try {
        await storeTransaction(async () => {
          await store.outbox.findOrCreate(outboxEvent('ambient-gone-1'))
          await storeTransaction(async () => {
            await store.outbox.findOrCreateMany([outboxEvent('ambient-gone-2')])
          })
          await store.inbox.markAsProcessed('ambient-in')
          throw new Error('business rule failed')
        })
      } catch (error) {
        thrown = error
      }
      expectSame(
        (thrown as Error | undefined)?.message,
        'business rule failed',
        "the function's own error reaches the caller",
      )
      for (const id of ['ambient-gone-1', 'ambient-gone-2'])
        expectSame(await store.oracle.outbox(id), null, `oracle: ${id}, written without { tx }, rolled back`)
      expectSame(await store.oracle.outboxCount(), 0, 'oracle: no outbox rows after the rollback')
      expectSame(
        (await storedInbox(store, 'ambient-in')).status,
        'processing',
        'oracle: the processed mark made without { tx } rolled back',
      )

      const answer = await storeTransaction(async (_tx, { attempt }) => {
        expectSame(attempt, 1, 'the first run is attempt 1')
        await store.outbox.findOrCreate(outboxEvent('ambient-1'))
        await storeTransaction(async () => {
          await store.outbox.findOrCreateMany([outboxEvent('ambient-2'), outboxEvent('ambient-3')])
        })
        await store.inbox.markAsProcessed('ambient-in')
        return 'committed'
      })
      expectSame(answer, 'committed', "store.transaction answers the function's result")
      for (const id of ['ambient-1', 'ambient-2', 'ambient-3'])
        expectSame((await storedOutbox(store, id)).status, 'pending', `oracle: ${id} stored at commit`)
      expectSame(await store.oracle.outboxCount(), 3, 'oracle: three outbox rows')
      expectSame(
        (await storedInbox(store, 'ambient-in')).status,
        'processed',
        'oracle: the processed mark committed with the enqueues',
      )
    },
  }),
  defineCase({
    id: 'outbox.tx.store-transaction-isolated',
    title:
      'a write made from outside an open store.transaction (another async context, no { tx }) is not part of it: stored when it rolls back, and the store serves { tx } writes of its own transactions after it ends',
    skipReason: requiresTransactions,
    async run({ store }) {
      if (store.storeTransaction === undefined) return skipCase(NO_STORE_TRANSACTION_REASON)
      const storeTransaction = store.storeTransaction.bind(store)
      for (const ending of ['rollback', 'commit'] as const) {
        const inside = `isolated-${ending}-inside`
        const outside = `isolated-${ending}-outside`
        const wrote = gate()
        const end = gate()
        const done = storeTransaction(async () => {
          await store.outbox.findOrCreate(outboxEvent(inside))
          wrote.open()
          await end.promise
          if (ending === 'rollback') throw new Error('business rule failed')
        }).then(
          () => undefined,
          (error: unknown) => error,
        )
        await Promise.race([wrote.promise, done])
        // The case's own context, not the transaction's: this write must not join it. On a
        // store with one connection it waits for the transaction, so it is awaited only after.
        const outsideWrite = store.outbox.findOrCreate(outboxEvent(outside)).then(
          (event) => ({ event }),
          (error: unknown) => ({ error }),
        )
        await turns(20)
        end.open()
        const thrown = await done
        expectSame(
          (thrown as Error | undefined)?.message,
          ending === 'rollback' ? 'business rule failed' : undefined,
          `${ending}: what store.transaction answered`,
        )
        const written = await outsideWrite
        if ('error' in written)
          expectSame(
            written.error,
            undefined,
            `${outside}: the write from outside the transaction failed: ${String(written.error)}`,
          )
        expectSame((await storedOutbox(store, outside)).status, 'pending', `oracle: ${outside} stored`)
        if (ending === 'rollback')
          expectSame(await store.oracle.outbox(inside), null, `oracle: ${inside} rolled back`)
        else expectSame((await storedOutbox(store, inside)).status, 'pending', `oracle: ${inside} committed`)
      }
      await store.transaction(async (tx) => {
        await store.outbox.findOrCreate(outboxEvent('isolated-after'), { tx })
      })
      expectSame(
        (await storedOutbox(store, 'isolated-after')).status,
        'pending',
        "oracle: a { tx } write of the caller's own transaction after store.transaction ended",
      )
      expectSame(await store.oracle.outboxCount(), 4, 'oracle: four outbox rows')
    },
  }),
]
