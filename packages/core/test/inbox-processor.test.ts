import { describe, expect, it, vi } from 'vitest'
import {
  createMemoryStore,
  createPrometheusExporter,
  type InboxHandler,
  InboxProcessor,
  type InboxProcessorCommonOptions,
  ManualClock,
  type MemoryTransaction,
} from '../src/index.js'
import { FakeSource, flush, memoryTransactionRunner, message } from './helpers.js'

const setup = (
  handler: InboxHandler<MemoryTransaction>,
  options: Partial<InboxProcessorCommonOptions<MemoryTransaction>> = {},
) => {
  const clock = new ManualClock()
  const store = createMemoryStore({ clock: clock.now })
  const source = new FakeSource()
  // The business table: written only through the handler's transaction.
  const ledger: string[] = []
  const processor = new InboxProcessor<MemoryTransaction>({
    inbox: store.inbox,
    source,
    handler,
    workerId: 'inbox-a',
    clock: clock.now,
    random: () => 0,
    backoff: { baseMs: 100, maxMs: 1_000, jitter: 0.5 },
    maxDeliveries: 3,
    leaseMs: 5_000,
    transaction: memoryTransactionRunner(store),
    ...options,
  })
  return { clock, store, source, processor, ledger }
}

describe('InboxProcessor', () => {
  it('runs the handler once per event and acks duplicates without running it', async () => {
    const seen: string[] = []
    const { store, processor } = setup(async ({ event }) => {
      seen.push(event.eventId)
    })
    const first = message({ eventId: 'e-1', streamSeq: 1 })
    await processor.handle(first)
    expect(first.settled).toEqual({ kind: 'ack' })
    // The same event again: redelivered, and republished past the JetStream window (new seq).
    const redelivered = message({ eventId: 'e-1', streamSeq: 1, deliveryCount: 2 })
    const republished = message({ eventId: 'e-1', streamSeq: 9 })
    await processor.handle(redelivered)
    await processor.handle(republished)
    expect(redelivered.settled).toEqual({ kind: 'ack' })
    expect(republished.settled).toEqual({ kind: 'ack' })
    expect(seen).toEqual(['e-1'])
    expect(await store.inbox.get('e-1')).toMatchObject({
      status: 'processed',
      deliveries: 3,
      stream: 'ORDERS',
    })
    expect(processor.counters()).toMatchObject({ received: 3, processed: 1, duplicates: 2 })
  })

  it('commits the handler writes and the processed mark together', async () => {
    const ledgerRows: string[] = []
    let fail = true
    const { store, processor } = setup(async ({ event, tx }) => {
      // A write that joins the transaction: applied only on commit.
      tx?.enlist(() => ledgerRows.push(event.eventId))
      if (fail) throw new Error('downstream busy')
    })
    const first = message({ eventId: 'e-1' })
    await processor.handle(first)
    expect(first.settled).toEqual({ kind: 'nak', delayMs: 100 })
    expect(ledgerRows).toEqual([])
    expect(await store.inbox.get('e-1')).toMatchObject({ status: 'failed', errorMessage: 'downstream busy' })
    fail = false
    const second = message({ eventId: 'e-1', deliveryCount: 2 })
    await processor.handle(second)
    expect(second.settled).toEqual({ kind: 'ack' })
    expect(ledgerRows).toEqual(['e-1'])
    expect(await store.inbox.get('e-1')).toMatchObject({ status: 'processed' })
    expect(processor.counters()).toMatchObject({ handlerErrors: 1, redelivered: 1, processed: 1 })
  })

  it('naks with growing backoff and terminates after maxDeliveries', async () => {
    const { store, processor } = setup(async () => {
      throw new Error('poison')
    })
    const delays: unknown[] = []
    for (let delivery = 1; delivery <= 3; delivery++) {
      const copy = message({ eventId: 'p-1', deliveryCount: delivery })
      await processor.handle(copy)
      delays.push(copy.settled)
    }
    expect(delays).toEqual([
      { kind: 'nak', delayMs: 100 },
      { kind: 'nak', delayMs: 200 },
      { kind: 'term', reason: 'failed 3 times: poison' },
    ])
    expect(await store.inbox.get('p-1')).toMatchObject({
      status: 'failed',
      deliveries: 3,
      errorMessage: 'poison',
    })
    expect(processor.counters()).toMatchObject({ terminated: 1, redelivered: 2, handlerErrors: 3 })
  })

  it('puts the last delivery back instead of terminating it when the failed mark cannot be written', async () => {
    const { store, processor, clock } = setup(async () => {
      throw new Error('poison')
    })
    for (let delivery = 1; delivery <= 2; delivery++)
      await processor.handle(message({ eventId: 'p-2', deliveryCount: delivery }))
    // The store fails the third failed mark: a terminate now would leave the row `processing`
    // for good, with nothing left to deliver it again.
    const markAsFailed = store.inbox.markAsFailed.bind(store.inbox)
    store.inbox.markAsFailed = async () => {
      throw new Error('store down')
    }
    const last = message({ eventId: 'p-2', deliveryCount: 3 })
    await processor.handle(last)
    expect(last.settled).toEqual({ kind: 'nak', delayMs: 5_000 })
    expect(await store.inbox.get('p-2')).toMatchObject({ status: 'processing', deliveries: 3 })
    // Redelivered once the lease has ended, it is claimed again and dead-lettered for real.
    store.inbox.markAsFailed = markAsFailed
    clock.advance(5_000)
    const again = message({ eventId: 'p-2', deliveryCount: 4 })
    await processor.handle(again)
    expect(again.settled).toEqual({ kind: 'term', reason: 'failed 4 times: poison' })
    expect(await store.inbox.get('p-2')).toMatchObject({ status: 'failed', errorMessage: 'poison' })
    expect(processor.counters()).toMatchObject({ terminated: 1, storeErrors: 1 })
  })

  it('counts only deliveries the inbox stored towards maxDeliveries, so a store outage cannot dead-letter an event', async () => {
    let calls = 0
    const { store, processor } = setup(async () => {
      calls++
      throw new Error('transient')
    })
    // JetStream delivered this message four times while the inbox store was unreachable (each
    // claim failed, the handler never ran); the fifth delivery reaches the handler, which fails once.
    const copy = message({ eventId: 'o-1', deliveryCount: 5 })
    await processor.handle(copy)
    expect(calls).toBe(1)
    expect(copy.settled).toEqual({ kind: 'nak', delayMs: 100 })
    expect(await store.inbox.get('o-1')).toMatchObject({ status: 'failed', deliveries: 1 })
    expect(processor.counters()).toMatchObject({ terminated: 0, redelivered: 1 })
  })

  it('puts back a copy whose event another worker is handling right now', async () => {
    const { store, processor } = setup(async () => {})
    await store.inbox.claim(
      { eventId: 'e-1', subject: 'orders.created', payload: '{}' },
      { leaseMs: 60_000, workerId: 'inbox-b' },
    )
    const copy = message({ eventId: 'e-1' })
    await processor.handle(copy)
    // Not acked: if inbox-b's handler fails, this copy is what brings the event back.
    expect(copy.settled).toEqual({ kind: 'nak', delayMs: 5_000 })
    expect(processor.counters().inFlightElsewhere).toBe(1)
  })

  it('takes over an event whose lease expired', async () => {
    const seen: string[] = []
    const { clock, store, processor } = setup(async ({ event }) => {
      seen.push(event.eventId)
    })
    await store.inbox.claim(
      { eventId: 'e-1', subject: 'orders.created', payload: '{}' },
      { leaseMs: 1_000, workerId: 'crashed' },
    )
    clock.advance(1_000)
    await processor.handle(message({ eventId: 'e-1', deliveryCount: 2 }))
    expect(seen).toEqual(['e-1'])
  })

  it('records a message without Nats-Msg-Id under <stream>:<seq>', async () => {
    const seen: string[] = []
    const { processor } = setup(async ({ event }) => {
      seen.push(event.eventId)
    })
    await processor.handle(message({ eventId: undefined, stream: 'ORDERS', streamSeq: 42 }))
    await processor.handle(message({ eventId: undefined, stream: 'ORDERS', streamSeq: 42, deliveryCount: 2 }))
    expect(seen).toEqual(['ORDERS:42'])
    const orphan = message({ eventId: undefined, stream: undefined, streamSeq: undefined })
    await processor.handle(orphan)
    expect(orphan.settled?.kind).toBe('term')
  })

  it('records a message without Nats-Msg-Id under <stream>:<created>:<seq>, so a re-created stream cannot collide', async () => {
    const seen: string[] = []
    const { processor } = setup(async ({ event }) => {
      seen.push(event.eventId)
    })
    const before = '2026-01-01T00:00:00.000000001Z'
    const after = '2026-01-01T00:05:00.5Z'
    await processor.handle(message({ eventId: undefined, streamSeq: 1, streamCreated: before }))
    await processor.handle(
      message({ eventId: undefined, streamSeq: 1, streamCreated: before, deliveryCount: 2 }),
    )
    // The stream was deleted and re-created: sequence 1 again, another event.
    const reused = message({ eventId: undefined, streamSeq: 1, streamCreated: after })
    await processor.handle(reused)
    expect(reused.settled?.kind).toBe('ack')
    expect(seen).toEqual([`ORDERS:${before}:1`, `ORDERS:${after}:1`])
  })

  it('terminates a message the inbox can never store', async () => {
    const { processor } = setup(async () => {})
    const tooLong = message({ eventId: 'x'.repeat(300) })
    await processor.handle(tooLong)
    expect(tooLong.settled?.kind).toBe('term')
  })

  it('hands the headers (traceparent) to the handler and stores them', async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
    let received: Readonly<Record<string, string>> | undefined
    const { store, processor } = setup(async ({ headers }) => {
      received = headers
    })
    await processor.handle(
      message({ eventId: 'e-1', headers: { traceparent }, storedHeaders: JSON.stringify({ traceparent }) }),
    )
    expect(received).toEqual({ traceparent })
    expect((await store.inbox.get('e-1'))?.headers).toBe(JSON.stringify({ traceparent }))
  })

  it('naks (does not ack) when the inbox is unreachable', async () => {
    const { store, processor } = setup(async () => {})
    store.inbox.claim = async () => {
      throw new Error('db down')
    }
    const copy = message({ eventId: 'e-1' })
    await processor.handle(copy)
    expect(copy.settled).toEqual({ kind: 'nak', delayMs: 100 })
    expect(processor.counters().storeErrors).toBe(1)
  })

  it('works without a transaction runner (handler, then mark)', async () => {
    const seen: string[] = []
    const store = createMemoryStore()
    const processor = new InboxProcessor({
      inbox: store.inbox,
      source: new FakeSource(),
      handler: async ({ event, tx }) => {
        expect(tx).toBeUndefined()
        seen.push(event.eventId)
      },
    })
    await processor.handle(message({ eventId: 'e-1' }))
    expect(seen).toEqual(['e-1'])
    expect(await store.inbox.isProcessed('e-1')).toBe(true)
  })

  it('consumes from its source with bounded concurrency and drains on stop()', async () => {
    let active = 0
    let maxActive = 0
    let release: (() => void) | undefined
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const { source, processor, store } = setup(
      async () => {
        active++
        maxActive = Math.max(maxActive, active)
        await gate
        active--
      },
      { concurrency: 2 },
    )
    await processor.start()
    const messages = Array.from({ length: 5 }, (_, index) =>
      message({ eventId: `e-${index}`, streamSeq: index }),
    )
    source.push(...messages)
    await flush()
    expect(maxActive).toBe(2)
    let stopped = false
    const stopping = processor.stop().then(() => {
      stopped = true
    })
    await flush()
    expect(stopped).toBe(false)
    release?.()
    await stopping
    // The two in flight finished and were acked; the rest stay with the transport.
    expect(messages.filter((copy) => copy.settled?.kind === 'ack')).toHaveLength(2)
    expect((await store.inbox.getCountByStatus()).processed).toBe(2)
    expect(maxActive).toBe(2)
    expect((await processor.health()).loop.ok).toBe(false)
  })

  it('reports progress (working) while a long handler runs, when asked to', async () => {
    vi.useFakeTimers()
    try {
      let finish: (() => void) | undefined
      const { processor } = setup(
        () =>
          new Promise<void>((resolve) => {
            finish = resolve
          }),
        { ackProgressEveryMs: 1_000 },
      )
      let working = 0
      const copy = message({ eventId: 'slow-1' })
      copy.working = () => {
        working++
      }
      const handled = processor.handle(copy)
      await vi.advanceTimersByTimeAsync(3_500)
      expect(working).toBe(3)
      finish?.()
      await handled
      await vi.advanceTimersByTimeAsync(5_000)
      expect(working).toBe(3)
      expect(copy.settled).toEqual({ kind: 'ack' })
    } finally {
      vi.useRealTimers()
    }
  })

  it('exposes its counters to Prometheus', async () => {
    const { processor } = setup(async () => {})
    await processor.handle(message({ eventId: 'e-1' }))
    await processor.handle(message({ eventId: 'e-1', deliveryCount: 2 }))
    const text = await (await createPrometheusExporter({ processor })).metrics()
    expect(text).toContain('txbox_inbox_processed_total{worker_id="inbox-a"} 1')
    expect(text).toContain('txbox_inbox_duplicates_total{worker_id="inbox-a"} 1')
  })
})
