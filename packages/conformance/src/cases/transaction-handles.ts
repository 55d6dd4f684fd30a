import { expectSame, expectTxboxError, storedInbox, storedOutbox } from '../assertions.js'
import { defineCase, requiresTransactions, skipCase } from '../case.js'
import { inboxEvent, outboxEvent } from '../events.js'
import type { ConformanceFixture } from '../target.js'
import { NO_STORE_TRANSACTION_REASON } from './outbox-transactions.js'
import { gate } from './rules-3.js'

/** Why `outbox.tx.foreign-handle-refused` is skipped on a fixture without `foreignTransaction`. */
export const NO_FOREIGN_TRANSACTION_REASON =
  'the target offers no foreignTransaction (a handle of another connection, client or store that the store must refuse)'

/**
 * The three writes that take `{ tx }`, each expected to be refused with `ValidationError`:
 * `tag` names the ids they would write and the checks' labels.
 */
const expectEveryWriteRefused = async (
  store: ConformanceFixture,
  tx: unknown,
  tag: string,
  inboxId: string,
): Promise<void> => {
  await expectTxboxError(
    'ValidationError',
    () => store.outbox.findOrCreate(outboxEvent(`${tag}-1`), { tx }),
    `${tag}: findOrCreate with { tx }`,
  )
  await expectTxboxError(
    'ValidationError',
    () => store.outbox.findOrCreateMany([outboxEvent(`${tag}-2`), outboxEvent(`${tag}-3`)], { tx }),
    `${tag}: findOrCreateMany with { tx }`,
  )
  await expectTxboxError(
    'ValidationError',
    () => store.inbox.markAsProcessed(inboxId, { tx }),
    `${tag}: inbox.markAsProcessed with { tx }`,
  )
}

/** The refused writes left nothing: no outbox row of `tag`, the inbox message still processing. */
const expectNothingWritten = async (
  store: ConformanceFixture,
  tag: string,
  inboxId: string,
): Promise<void> => {
  for (const id of [`${tag}-1`, `${tag}-2`, `${tag}-3`])
    expectSame(await store.oracle.outbox(id), null, `oracle: ${id}, refused, is not stored`)
  expectSame(
    (await storedInbox(store, inboxId)).status,
    'processing',
    `oracle: ${inboxId} is still processing after the refused mark`,
  )
}

export const transactionHandleCases = [
  defineCase({
    id: 'outbox.tx.ended-handle-refused',
    title:
      "a store.transaction's tx used after it committed or rolled back, and a write still running when it ended, are refused with ValidationError and write nothing",
    skipReason: requiresTransactions,
    async run({ store }) {
      if (store.storeTransaction === undefined) return skipCase(NO_STORE_TRANSACTION_REASON)
      const storeTransaction = store.storeTransaction.bind(store)
      for (const ending of ['commit', 'rollback'] as const) {
        const inboxId = `ended-${ending}-in`
        await store.inbox.findOrCreate(inboxEvent(inboxId))
        const ended = gate()
        let kept: unknown
        let late: Promise<unknown> | undefined
        const thrown = await storeTransaction(async (tx) => {
          kept = tx
          await store.outbox.findOrCreate(outboxEvent(`ended-${ending}-inside`), { tx })
          // Started inside the transaction, without { tx }: it joins the ambient one, but only
          // writes once that has ended.
          late = ended.promise.then(() => store.outbox.findOrCreate(outboxEvent(`ended-${ending}-late`)))
          late.catch(() => {})
          if (ending === 'rollback') throw new Error('business rule failed')
        }).then(
          () => undefined,
          (error: unknown) => error,
        )
        expectSame(
          (thrown as Error | undefined)?.message,
          ending === 'rollback' ? 'business rule failed' : undefined,
          `${ending}: what store.transaction answered`,
        )
        ended.open()
        await expectTxboxError(
          'ValidationError',
          () => late ?? Promise.resolve(),
          `${ending}: a write started inside the transaction that runs after it ended`,
        )
        await expectEveryWriteRefused(store, kept, `ended-${ending}`, inboxId)
        expectSame(
          await store.oracle.outbox(`ended-${ending}-late`),
          null,
          `oracle: ended-${ending}-late, refused, is not stored`,
        )
        await expectNothingWritten(store, `ended-${ending}`, inboxId)
        if (ending === 'rollback')
          expectSame(
            await store.oracle.outbox(`ended-${ending}-inside`),
            null,
            'oracle: the rolled-back event is not stored',
          )
        else
          expectSame(
            (await storedOutbox(store, `ended-${ending}-inside`)).status,
            'pending',
            'oracle: the committed event is stored',
          )
      }
      expectSame(await store.oracle.outboxCount(), 1, 'oracle: only the committed event is stored')
      await storeTransaction(async (tx) => {
        await store.outbox.findOrCreate(outboxEvent('ended-after'), { tx })
      })
      expectSame(
        (await storedOutbox(store, 'ended-after')).status,
        'pending',
        'oracle: a new store.transaction after the refusals works',
      )
    },
  }),
  defineCase({
    id: 'outbox.tx.foreign-handle-refused',
    title:
      "an open transaction handle of another connection, client or store (the target's foreignTransaction) is refused with ValidationError before anything is written, even once it commits",
    skipReason: requiresTransactions,
    async run({ store }) {
      if (store.foreignTransaction === undefined) return skipCase(NO_FOREIGN_TRANSACTION_REASON)
      const inboxId = 'foreign-in'
      await store.inbox.findOrCreate(inboxEvent(inboxId))
      await store.outbox.findOrCreate(outboxEvent('foreign-kept'))
      await store.foreignTransaction(async (tx) => {
        await expectEveryWriteRefused(store, tx, 'foreign', inboxId)
      })
      // The foreign transaction has committed: a write it had taken would show now.
      await expectNothingWritten(store, 'foreign', inboxId)
      expectSame(
        await store.oracle.outboxCount(),
        1,
        'oracle: the outbox holds only the event written before',
      )
      await store.transaction(async (tx) => {
        await store.outbox.findOrCreate(outboxEvent('foreign-after'), { tx })
      })
      expectSame(
        (await storedOutbox(store, 'foreign-after')).status,
        'pending',
        "oracle: a write with the store's own transaction after the refusals is stored",
      )
    },
  }),
]
