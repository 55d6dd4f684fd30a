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

/** Options `store.transaction` must refuse, each with what is wrong in it. */
const BAD_TRANSACTION_OPTIONS: readonly (readonly [string, unknown])[] = [
  ['a string', 'retries'],
  ['null', null],
  ['an array', [3]],
  ['a negative retries', { retries: -1 }],
  ['a fractional retries', { retries: 1.5 }],
  ['a retries string', { retries: '2' }],
  ['an unknown key', { retry: 2 }],
]

export const transactionHandleCases = [
  defineCase({
    id: 'outbox.tx.store-transaction-input',
    title:
      'store.transaction refuses a function that is not one and bad options with ValidationError before it begins; a nested call joins with the outer tx and attempt, and refuses retries',
    skipReason: requiresTransactions,
    async run({ store }) {
      if (store.storeTransaction === undefined) return skipCase(NO_STORE_TRANSACTION_REASON)
      const storeTransaction = store.storeTransaction.bind(store)
      for (const [what, fn] of [
        ['a string', 'fn'],
        ['undefined', undefined],
        ['an object', {}],
      ] as const)
        await expectTxboxError(
          'ValidationError',
          () => storeTransaction(fn as never),
          `store.transaction with ${what} as the function`,
        )
      let ran = 0
      for (const [what, options] of BAD_TRANSACTION_OPTIONS)
        await expectTxboxError(
          'ValidationError',
          () =>
            storeTransaction(async () => {
              ran++
              await store.outbox.findOrCreate(outboxEvent('input-refused'))
            }, options as never),
          `store.transaction with ${what} as options`,
        )
      expectSame(ran, 0, 'no function ran under refused options')
      expectSame(
        await store.oracle.outbox('input-refused'),
        null,
        'oracle: nothing written under refused options',
      )
      const answers = await storeTransaction(
        async (tx, { attempt }) => {
          await expectTxboxError(
            'ValidationError',
            () => storeTransaction(async () => undefined, { retries: 1 }),
            'a nested store.transaction that sets retries',
          )
          const nested = await storeTransaction(async (innerTx, inner) => {
            await store.outbox.findOrCreate(outboxEvent('input-nested'))
            return { sameTx: innerTx === tx, attempt: inner.attempt }
          })
          return { ...nested, outerAttempt: attempt }
        },
        { retries: 0 },
      )
      expectSame(answers.sameTx, true, 'the nested call gets the outer transaction')
      expectSame(answers.attempt, answers.outerAttempt, "the nested call gets the outer call's attempt")
      expectSame(answers.outerAttempt, 1, 'the first run is attempt 1')
      expectSame(
        (await storedOutbox(store, 'input-nested')).status,
        'pending',
        'oracle: the nested write committed with the outer transaction',
      )
      await storeTransaction(async (tx) => {
        await store.outbox.findOrCreate(outboxEvent('input-empty-options'), { tx })
      }, {})
      expectSame(
        (await storedOutbox(store, 'input-empty-options')).status,
        'pending',
        'oracle: empty options are valid',
      )
    },
  }),
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
