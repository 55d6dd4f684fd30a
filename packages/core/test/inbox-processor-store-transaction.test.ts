import { describe, expect, it } from 'vitest'
import {
  createMemoryStore,
  type InboxHandler,
  InboxProcessor,
  type MemoryTransaction,
  silentLogger,
  ValidationError,
} from '../src/index.js'
import { FakeSource, message } from './helpers.js'

const enqueued = (eventId: string) => ({
  eventId: `reply-${eventId}`,
  subject: 'orders.replied',
  payload: '{}',
})

/** A processor on the memory store; the handler records a business row and enqueues a reply. */
const setup = (fail: () => boolean, extra: { transaction?: false } = {}) => {
  const store = createMemoryStore()
  const ledger: string[] = []
  const seenTx: (MemoryTransaction | undefined)[] = []
  const handler: InboxHandler<MemoryTransaction | undefined> = async ({ event, tx }) => {
    seenTx.push(tx)
    // The business write through the handler's transaction, or straight away without one.
    if (tx) tx.enlist(() => ledger.push(event.eventId))
    else ledger.push(event.eventId)
    // No { tx }: joins store.transaction when the processor runs the handler inside it.
    await store.outbox.findOrCreate(enqueued(event.eventId))
    if (fail()) throw new Error('downstream busy')
  }
  const processor = new InboxProcessor<MemoryTransaction>({
    store,
    source: new FakeSource(),
    handler,
    logger: silentLogger,
    random: () => 0,
    ...extra,
  })
  return { store, ledger, seenTx, processor }
}

describe('InboxProcessor on a store with store.transaction', () => {
  it('runs the handler inside store.transaction by default: side effect, enqueue and processed mark commit together', async () => {
    const { store, ledger, seenTx, processor } = setup(() => false)
    const delivery = message({ eventId: 'e-1' })
    await processor.handle(delivery)
    expect(seenTx).toHaveLength(1)
    expect(seenTx[0]).toBeDefined()
    expect(seenTx[0]?.state).toBe('committed')
    expect(ledger).toEqual(['e-1'])
    expect(store.outbox.snapshot().map((e) => e.eventId)).toEqual(['reply-e-1'])
    expect((await store.inbox.get('e-1'))?.status).toBe('processed')
    expect(delivery.settled).toEqual({ kind: 'ack' })
  })

  it('a throwing handler leaves neither the side effect, nor the enqueue, nor the processed mark; the redelivery then commits once', async () => {
    let failing = true
    const { store, ledger, seenTx, processor } = setup(() => failing)
    const first = message({ eventId: 'e-1' })
    await processor.handle(first)
    expect(ledger).toEqual([])
    expect(store.outbox.snapshot()).toEqual([])
    expect((await store.inbox.get('e-1'))?.status).toBe('failed')
    expect(seenTx[0]?.state).toBe('rolled back')
    expect(first.settled).toMatchObject({ kind: 'nak' })

    failing = false
    await processor.handle(message({ eventId: 'e-1', deliveryCount: 2 }))
    await processor.handle(message({ eventId: 'e-1', deliveryCount: 3 }))
    expect(ledger).toEqual(['e-1'])
    expect(store.outbox.snapshot().map((e) => e.eventId)).toEqual(['reply-e-1'])
    expect((await store.inbox.get('e-1'))?.status).toBe('processed')
  })

  it('transaction: false opts out: the handler gets no tx and its writes stay even when it throws', async () => {
    const { store, ledger, seenTx, processor } = setup(() => true, { transaction: false })
    await processor.handle(message({ eventId: 'e-1' }))
    expect(seenTx).toEqual([undefined])
    expect(ledger).toEqual(['e-1'])
    expect(store.outbox.snapshot().map((e) => e.eventId)).toEqual(['reply-e-1'])
    expect((await store.inbox.get('e-1'))?.status).toBe('failed')
  })

  it('an explicit transaction runner is used instead of store.transaction', async () => {
    const store = createMemoryStore()
    const runs: string[] = []
    const processor = new InboxProcessor<MemoryTransaction>({
      store,
      source: new FakeSource(),
      logger: silentLogger,
      transaction: async (fn) => {
        runs.push('runner')
        const tx = store.begin()
        const result = await fn(tx)
        tx.commit()
        return result
      },
      handler: async ({ tx }) => {
        // Not inside store.transaction: a write without { tx } applies at once.
        await store.outbox.findOrCreate(enqueued('e-1'))
        expect(store.outbox.snapshot()).toHaveLength(1)
        tx.enlist(() => runs.push('business'))
      },
    })
    await processor.handle(message({ eventId: 'e-1' }))
    expect(runs).toEqual(['runner', 'business'])
    expect((await store.inbox.get('e-1'))?.status).toBe('processed')
  })

  it('store.transaction fits the transaction option as it is', async () => {
    const store = createMemoryStore()
    const processor = new InboxProcessor({
      inbox: store.inbox,
      source: new FakeSource(),
      logger: silentLogger,
      transaction: store.transaction,
      handler: async ({ tx }) => {
        await store.outbox.findOrCreate(enqueued('e-1'))
        expect(store.outbox.snapshot()).toEqual([])
        expect(tx.state).toBe('open')
      },
    })
    await processor.handle(message({ eventId: 'e-1' }))
    expect(store.outbox.snapshot().map((e) => e.eventId)).toEqual(['reply-e-1'])
  })

  it('a store without transaction runs the handler, then the mark, as before', async () => {
    const { inbox } = createMemoryStore()
    const seen: unknown[] = []
    const processor = new InboxProcessor({
      store: { inbox },
      source: new FakeSource(),
      logger: silentLogger,
      handler: async ({ tx }) => {
        seen.push(tx)
      },
    })
    await processor.handle(message({ eventId: 'e-1' }))
    expect(seen).toEqual([undefined])
    expect((await inbox.get('e-1'))?.status).toBe('processed')
  })

  const refused: [string, () => unknown, string][] = [
    [
      'both store and inbox',
      () => {
        const store = createMemoryStore()
        return new InboxProcessor({
          store,
          inbox: store.inbox,
          source: new FakeSource(),
          handler: async () => {},
        } as never)
      },
      '[txbox] [inbox-processor] pass options.store or options.inbox, not both',
    ],
    [
      'neither store nor inbox',
      () => new InboxProcessor({ source: new FakeSource(), handler: async () => {} }),
      '[txbox] [inbox-processor] options.inbox must be an InboxRepository (or pass options.store)',
    ],
    [
      'a store without an inbox',
      () => new InboxProcessor({ store: {} as never, source: new FakeSource(), handler: async () => {} }),
      '[txbox] [inbox-processor] options.store.inbox must be an InboxRepository',
    ],
    [
      'a store whose transaction is not a function',
      () =>
        new InboxProcessor({
          store: { inbox: createMemoryStore().inbox, transaction: 'yes' as never },
          source: new FakeSource(),
          handler: async () => {},
        }),
      '[txbox] [inbox-processor] options.store.transaction must be a function or absent',
    ],
    [
      'transaction: true',
      () =>
        new InboxProcessor({
          store: createMemoryStore(),
          source: new FakeSource(),
          transaction: true as never,
          handler: async () => {},
        }),
      '[txbox] [inbox-processor] options.transaction must be a function (fn) => Promise, false (no transaction), or left out',
    ],
  ]
  for (const [name, build, text] of refused) {
    it(`refuses ${name} with a ValidationError`, () => {
      expect(build).toThrow(ValidationError)
      expect(build).toThrow(text)
    })
  }
})

describe('InboxProcessor on a store without transactions on its server', () => {
  /** The memory store as a deployment without transactions would describe itself (FerretDB v1). */
  const withoutTransactions = (probe: 'static' | 'detected') => {
    const store = createMemoryStore()
    const capabilities = { transactions: 'none', transactionsNote: 'FerretDB v1' } as const
    return {
      inbox: store.inbox,
      transaction: store.transaction,
      capabilities: probe === 'static' ? capabilities : { transactions: 'native' as const },
      ...(probe === 'detected' ? { detectCapabilities: async () => capabilities } : {}),
    }
  }

  for (const probe of ['static', 'detected'] as const) {
    it(`refuses to start (capabilities ${probe}) instead of failing every message, and says to pass transaction: false`, async () => {
      const source = new FakeSource()
      const processor = new InboxProcessor({
        store: withoutTransactions(probe),
        source,
        handler: async () => {},
        logger: silentLogger,
      })
      const refusal = processor.start()
      await expect(refusal).rejects.toThrow(ValidationError)
      await expect(refusal).rejects.toThrow(
        /no transactions on this server \(FerretDB v1\).*transaction: false/,
      )
      await processor.stop()
    })
  }

  it('starts with transaction: false and runs the handler, then the processed mark', async () => {
    const store = withoutTransactions('detected')
    const source = new FakeSource()
    const handled: string[] = []
    const processor = new InboxProcessor({
      store,
      source,
      transaction: false,
      handler: async ({ event }) => {
        handled.push(event.eventId)
      },
      logger: silentLogger,
    })
    await processor.start()
    const delivery = message({ eventId: 'e-1' })
    await processor.handle(delivery)
    expect(handled).toEqual(['e-1'])
    expect(await store.inbox.isProcessed('e-1')).toBe(true)
    await processor.stop()
  })
})
