import { describe, expect, expectTypeOf, it } from 'vitest'
import {
  createMemoryStore,
  type InboxHandler,
  InboxProcessor,
  type MemoryTransaction,
  type TransactionRunner,
  type TxboxStore,
} from '../src/index.js'
import { FakeSource, memoryTransactionRunner, message } from './helpers.js'

// These cases are checked by `tsc` (`pnpm typecheck` includes test/): with the old typing
// (`tx: Tx | undefined` whatever the options) the `tx.enlist` calls and the
// `expectTypeOf(tx).toEqualTypeOf<MemoryTransaction>()` lines fail to compile, and the
// `@ts-expect-error` lines become unused directives, which fail too.

const store = createMemoryStore()
const runner: TransactionRunner<MemoryTransaction> = memoryTransactionRunner(store)

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
    const options = {
      inbox: store.inbox,
      source: new FakeSource(),
      transaction: otherRunner,
      handler: async () => {},
    }
    // @ts-expect-error the runner must hand out the inbox's own transaction type
    const build = () => new InboxProcessor(options)
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

  it('with a store that has store.transaction and no runner, tx is the store transaction', async () => {
    const written: string[] = []
    const processor = new InboxProcessor({
      store: createMemoryStore(),
      source: new FakeSource(),
      handler: async ({ event, tx }) => {
        expectTypeOf(tx).toEqualTypeOf<MemoryTransaction>()
        tx.enlist(() => written.push(event.eventId))
      },
    })
    await processor.handle(message({ eventId: 'store-1' }))
    expect(written).toEqual(['store-1'])
  })

  it('with transaction: false, tx is undefined even on a store that has store.transaction', async () => {
    const seen: unknown[] = []
    const processor = new InboxProcessor({
      store: createMemoryStore(),
      source: new FakeSource(),
      transaction: false,
      handler: async ({ tx }) => {
        expectTypeOf(tx).toEqualTypeOf<undefined>()
        seen.push(tx)
      },
    })
    await processor.handle(message({ eventId: 'opt-out-1' }))
    expect(seen).toEqual([undefined])
  })

  it('a store typed TxboxStore (transaction optional) gives tx: Tx | undefined', async () => {
    const typed: TxboxStore<MemoryTransaction> = createMemoryStore()
    const seen: boolean[] = []
    const processor = new InboxProcessor<MemoryTransaction>({
      store: typed,
      source: new FakeSource(),
      handler: async ({ tx }) => {
        expectTypeOf(tx).toEqualTypeOf<MemoryTransaction | undefined>()
        seen.push(tx !== undefined)
      },
    })
    await processor.handle(message({ eventId: 'typed-store-1' }))
    expect(seen).toEqual([true])
  })

  it('rejects a handler that needs a transaction on a store without one', () => {
    const needsTx: InboxHandler<MemoryTransaction> = async ({ tx }) => {
      tx.enlist(() => {})
    }
    const options = { store: { inbox: store.inbox }, source: new FakeSource(), handler: needsTx }
    // @ts-expect-error a store without transaction gives the handler no tx
    expect(() => new InboxProcessor(options)).not.toThrow()
  })
})
