import { describe, expect, expectTypeOf, it } from 'vitest'
import {
  createMemoryStore,
  type InboxHandler,
  InboxProcessor,
  type MemoryTransaction,
  type TransactionRunner,
} from '../src/index.js'
import { FakeSource, message } from './helpers.js'

// These cases are checked by `tsc` (`pnpm typecheck` includes test/): with the old typing
// (`tx: Tx | undefined` whatever the options) the `tx.enlist` calls and the
// `expectTypeOf(tx).toEqualTypeOf<MemoryTransaction>()` lines fail to compile, and the
// `@ts-expect-error` lines become unused directives, which fail too.

const store = createMemoryStore()
const runner: TransactionRunner<MemoryTransaction> = async (fn) => {
  const tx = store.begin()
  try {
    const result = await fn(tx)
    tx.commit()
    return result
  } catch (error) {
    tx.rollback()
    throw error
  }
}

describe('InboxProcessor handler types follow the options', () => {
  it('with a transaction runner, tx is the store transaction (no `?.`, no `!`)', async () => {
    const written: string[] = []
    const processor = new InboxProcessor({
      inbox: store.inbox,
      source: new FakeSource(),
      transaction: runner,
      handler: async ({ event, tx }) => {
        expectTypeOf(tx).toEqualTypeOf<MemoryTransaction>()
        tx.enlist(() => written.push(event.eventId))
      },
    })
    await processor.handle(message({ eventId: 'typed-1' }))
    expect(written).toEqual(['typed-1'])
  })

  it('without a runner, tx is undefined', async () => {
    const seen: unknown[] = []
    const processor = new InboxProcessor({
      inbox: store.inbox,
      source: new FakeSource(),
      handler: async ({ tx }) => {
        expectTypeOf(tx).toEqualTypeOf<undefined>()
        seen.push(tx)
      },
    })
    await processor.handle(message({ eventId: 'plain-1' }))
    expect(seen).toEqual([undefined])
  })

  it('rejects a handler that needs a transaction when no runner is given', () => {
    const needsTx: InboxHandler<MemoryTransaction> = async ({ tx }) => {
      tx.enlist(() => {})
    }
    expect(
      () =>
        // @ts-expect-error a handler that writes through tx needs a `transaction` runner
        new InboxProcessor({ inbox: store.inbox, source: new FakeSource(), handler: needsTx }),
    ).not.toThrow()
  })

  it('rejects a runner whose transaction is not the inbox store transaction', () => {
    const otherRunner: TransactionRunner<{ query(sql: string): Promise<unknown> }> = async (fn) =>
      fn({ query: async () => undefined })
    const build = () =>
      // @ts-expect-error the runner must hand out the inbox's own transaction type
      new InboxProcessor({
        inbox: store.inbox,
        source: new FakeSource(),
        transaction: otherRunner,
        handler: async () => {},
      })
    expect(build).not.toThrow()
  })

  it('a runner known only at run time gives tx: Tx | undefined', async () => {
    const maybeRunner = (withTransactions: boolean): TransactionRunner<MemoryTransaction> | undefined =>
      withTransactions ? runner : undefined
    const seen: boolean[] = []
    const processor = new InboxProcessor<MemoryTransaction>({
      inbox: store.inbox,
      source: new FakeSource(),
      transaction: maybeRunner(false),
      handler: async ({ tx }) => {
        expectTypeOf(tx).toEqualTypeOf<MemoryTransaction | undefined>()
        seen.push(tx === undefined)
      },
    })
    await processor.handle(message({ eventId: 'maybe-1' }))
    expect(seen).toEqual([true])
  })

  it('a declared handler type still fits: InboxHandler<Tx> with a runner, InboxHandler<undefined> without', () => {
    const withTx: InboxHandler<MemoryTransaction> = async ({ tx }) => {
      tx.enlist(() => {})
    }
    const withoutTx: InboxHandler<undefined> = async () => {}
    expect(
      new InboxProcessor({
        inbox: store.inbox,
        source: new FakeSource(),
        transaction: runner,
        handler: withTx,
      }),
    ).toBeInstanceOf(InboxProcessor)
    expect(
      new InboxProcessor({ inbox: store.inbox, source: new FakeSource(), handler: withoutTx }),
    ).toBeInstanceOf(InboxProcessor)
  })
})
