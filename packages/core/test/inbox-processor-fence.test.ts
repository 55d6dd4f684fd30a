import { describe, expect, it } from 'vitest'
import {
  createMemoryStore,
  type InboxHandler,
  InboxProcessor,
  LeaseLostError,
  ManualClock,
  type MemoryTransaction,
} from '../src/index.js'
import { memoryTransactionRunner, message } from './helpers.js'

const LEASE_MS = 5_000

/** A handler's way to wait: the test decides when the slow worker's handler goes on. */
const gate = () => {
  let open: () => void = () => {}
  const opened = new Promise<void>((resolve) => {
    open = resolve
  })
  return { opened, open }
}

/**
 * Two processors (two workers) on one memory store, each running its handler and the
 * processed mark in one transaction: the business ledger is written only through it.
 */
const setup = () => {
  const clock = new ManualClock()
  const store = createMemoryStore({ clock: clock.now })
  const ledger: string[] = []
  const warnings: { message: string; fields: Record<string, unknown> | undefined }[] = []
  const worker = (workerId: string, handler: InboxHandler<MemoryTransaction>) =>
    new InboxProcessor<MemoryTransaction>({
      inbox: store.inbox,
      source: { subscribe: () => Promise.reject(new Error('not used: the test hands messages in')) },
      handler,
      workerId,
      clock: clock.now,
      random: () => 0,
      backoff: { baseMs: 100, maxMs: 1_000, jitter: 0.5 },
      maxDeliveries: 2,
      leaseMs: LEASE_MS,
      logger: {
        warn: (text: string, fields?: Record<string, unknown>) => warnings.push({ message: text, fields }),
        error: () => {},
      },
      transaction: memoryTransactionRunner(store),
    })
  return { clock, store, ledger, warnings, worker }
}

describe('InboxProcessor: fenced marks after a take-over', () => {
  it("rolls back the slow worker's handler writes when another worker took the message over and processed it, and puts the message back instead of acking it", async () => {
    const { clock, store, ledger, warnings, worker } = setup()
    const slow = gate()
    const a = worker('worker-a', async ({ event, tx }) => {
      await slow.opened
      tx?.enlist(() => ledger.push(`a:${event.eventId}`))
    })
    const b = worker('worker-b', async ({ event, tx }) => {
      tx?.enlist(() => ledger.push(`b:${event.eventId}`))
    })
    const first = message({ eventId: 'm-1' })
    const running = a.handle(first)
    await Promise.resolve()
    expect(await store.inbox.get('m-1')).toMatchObject({ status: 'processing', claimedBy: 'worker-a#1' })
    // A's handler is slower than its lease: JetStream redelivers, B takes the message over.
    clock.advance(LEASE_MS)
    const redelivery = message({ eventId: 'm-1', deliveryCount: 2 })
    await b.handle(redelivery)
    expect(redelivery.settled).toEqual({ kind: 'ack' })
    expect(ledger).toEqual(['b:m-1'])
    slow.open()
    await running
    // The effect is in the ledger once: A's transaction rolled back on LeaseLostError.
    expect(ledger).toEqual(['b:m-1'])
    expect(first.settled).toEqual({ kind: 'nak', delayMs: LEASE_MS })
    const stored = await store.inbox.get('m-1')
    expect(stored).toMatchObject({ status: 'processed', deliveries: 2 })
    expect(stored?.errorMessage).toBeUndefined()
    expect(a.counters()).toMatchObject({ leaseLost: 1, processed: 0, redelivered: 1, terminated: 0 })
    expect(b.counters()).toMatchObject({ leaseLost: 0, processed: 1 })
    expect(warnings).toHaveLength(1)
    expect(warnings[0]?.message).toContain('lease lost')
    expect(warnings[0]?.fields).toMatchObject({ eventId: 'm-1' })
    // A's copy comes back after a lease and is acked as a duplicate: the handler does not run.
    clock.advance(LEASE_MS)
    const back = message({ eventId: 'm-1', deliveryCount: 3 })
    await a.handle(back)
    expect(back.settled).toEqual({ kind: 'ack' })
    expect(ledger).toEqual(['b:m-1'])
    expect(a.counters()).toMatchObject({ duplicates: 1 })
  })

  it("never overwrites another worker's processed mark with a late failure: put back, not terminated, even on its last delivery", async () => {
    const { clock, store, ledger, worker } = setup()
    const slow = gate()
    const a = worker('worker-a', async () => {
      await slow.opened
      throw new Error('timed out downstream')
    })
    const b = worker('worker-b', async ({ event, tx }) => {
      tx?.enlist(() => ledger.push(`b:${event.eventId}`))
    })
    // maxDeliveries is 2: without the fence this failure would terminate the message.
    const last = message({ eventId: 'm-2', deliveryCount: 2 })
    const running = a.handle(last)
    await Promise.resolve()
    clock.advance(LEASE_MS)
    await b.handle(message({ eventId: 'm-2', deliveryCount: 3 }))
    slow.open()
    await running
    expect(last.settled).toEqual({ kind: 'nak', delayMs: LEASE_MS })
    expect(await store.inbox.get('m-2')).toMatchObject({ status: 'processed' })
    expect(await store.inbox.getFailedEvents()).toEqual([])
    expect(a.counters()).toMatchObject({ leaseLost: 1, handlerErrors: 1, terminated: 0, storeErrors: 0 })
    // The next delivery finds it processed: the handler does not run again.
    const again = message({ eventId: 'm-2', deliveryCount: 4 })
    await a.handle(again)
    expect(again.settled).toEqual({ kind: 'ack' })
    expect(ledger).toEqual(['b:m-2'])
  })

  it("leaves the new holder's claim alone when the slow worker fails while the other one still runs", async () => {
    const { clock, store, worker } = setup()
    const slowA = gate()
    const slowB = gate()
    const a = worker('worker-a', async () => {
      await slowA.opened
      throw new Error('gave up')
    })
    const b = worker('worker-b', async () => {
      await slowB.opened
    })
    const first = message({ eventId: 'm-3' })
    const runningA = a.handle(first)
    await Promise.resolve()
    clock.advance(LEASE_MS)
    const runningB = b.handle(message({ eventId: 'm-3', deliveryCount: 2 }))
    await Promise.resolve()
    expect(await store.inbox.get('m-3')).toMatchObject({ status: 'processing', claimedBy: 'worker-b#1' })
    slowA.open()
    await runningA
    expect(first.settled).toEqual({ kind: 'nak', delayMs: LEASE_MS })
    const held = await store.inbox.get('m-3')
    expect(held).toMatchObject({ status: 'processing', claimedBy: 'worker-b#1' })
    expect(held?.errorMessage).toBeUndefined()
    slowB.open()
    await runningB
    expect(await store.inbox.get('m-3')).toMatchObject({ status: 'processed' })
    expect(a.counters()).toMatchObject({ leaseLost: 1, terminated: 0 })
  })

  it('gives each delivery its own claim: the first copy failing late, while the redelivery to this same processor runs, neither fails the message nor spoils the redelivery', async () => {
    const { clock, store, ledger, worker } = setup()
    const firstCopy = gate()
    const secondCopy = gate()
    let calls = 0
    const a = worker('worker-a', async ({ event, tx }) => {
      calls++
      if (calls === 1) {
        await firstCopy.opened
        throw new Error('timed out downstream')
      }
      await secondCopy.opened
      tx?.enlist(() => ledger.push(`a:${event.eventId}`))
    })
    const first = message({ eventId: 'm-6' })
    const runningFirst = a.handle(first)
    await Promise.resolve()
    expect(await store.inbox.get('m-6')).toMatchObject({ status: 'processing', claimedBy: 'worker-a#1' })
    // The first copy outlives its lease: JetStream redelivers to the same processor, which
    // takes the expired claim over under a claim of its own.
    clock.advance(LEASE_MS)
    const second = message({ eventId: 'm-6', deliveryCount: 2 })
    const runningSecond = a.handle(second)
    await Promise.resolve()
    expect(await store.inbox.get('m-6')).toMatchObject({ status: 'processing', claimedBy: 'worker-a#2' })
    // The first copy fails while the second runs: its claim is gone, so the message is not
    // failed under the running copy (sharing one claim, it was, and the second then lost it).
    firstCopy.open()
    await runningFirst
    expect(first.settled).toEqual({ kind: 'nak', delayMs: LEASE_MS })
    expect(await store.inbox.get('m-6')).toMatchObject({ status: 'processing', claimedBy: 'worker-a#2' })
    secondCopy.open()
    await runningSecond
    expect(second.settled).toEqual({ kind: 'ack' })
    expect(ledger).toEqual(['a:m-6'])
    expect(await store.inbox.get('m-6')).toMatchObject({ status: 'processed', deliveries: 2 })
    expect(await store.inbox.getFailedEvents()).toEqual([])
    expect(a.counters()).toMatchObject({ processed: 1, leaseLost: 1, terminated: 0 })
  })

  it('marks with its workerId: the holder of an expired lease nobody took over still completes', async () => {
    const { clock, store, ledger, worker } = setup()
    const a = worker('worker-a', async ({ event, tx }) => {
      clock.advance(LEASE_MS * 2)
      tx?.enlist(() => ledger.push(`a:${event.eventId}`))
    })
    const only = message({ eventId: 'm-4' })
    await a.handle(only)
    expect(only.settled).toEqual({ kind: 'ack' })
    expect(ledger).toEqual(['a:m-4'])
    expect(await store.inbox.get('m-4')).toMatchObject({ status: 'processed' })
    expect(a.counters()).toMatchObject({ processed: 1, leaseLost: 0 })
  })

  it("treats a handler's own LeaseLostError as a handler failure, not as a lost claim", async () => {
    const { store, worker } = setup()
    const a = worker('worker-a', async () => {
      throw new LeaseLostError('memory', 'some-outbox-event', 'relay-1')
    })
    const first = message({ eventId: 'm-5' })
    await a.handle(first)
    expect(first.settled).toEqual({ kind: 'nak', delayMs: 100 })
    expect(await store.inbox.get('m-5')).toMatchObject({ status: 'failed' })
    expect(a.counters()).toMatchObject({ leaseLost: 0, handlerErrors: 1 })
  })
})

describe('memory inbox: a fenced mark inside a transaction', () => {
  it('pins the claim until the commit, so no take-over slips between the mark and the commit', async () => {
    const clock = new ManualClock()
    const t0 = clock.now().getTime()
    const store = createMemoryStore({ clock: clock.now })
    await store.inbox.claim(
      { eventId: 'p-1', subject: 's', payload: '{}' },
      { leaseMs: LEASE_MS, workerId: 'a' },
    )
    clock.advance(4_000)
    const tx = store.begin()
    await store.inbox.markAsProcessed('p-1', { tx, workerId: 'a' })
    expect((await store.inbox.get('p-1'))?.leaseUntil?.getTime()).toBe(t0 + 4_000 + LEASE_MS)
    clock.advance(2_000)
    const late = await store.inbox.claim(
      { eventId: 'p-1', subject: 's', payload: '{}' },
      { leaseMs: LEASE_MS, workerId: 'b' },
    )
    expect(late.shouldProcess).toBe(false)
    tx.commit()
    expect(await store.inbox.get('p-1')).toMatchObject({ status: 'processed' })
  })

  it("keeps the other worker's claim when the commit comes later than the pinned lease", async () => {
    const clock = new ManualClock()
    const store = createMemoryStore({ clock: clock.now })
    await store.inbox.claim(
      { eventId: 'p-2', subject: 's', payload: '{}' },
      { leaseMs: LEASE_MS, workerId: 'a' },
    )
    const tx = store.begin()
    await store.inbox.markAsProcessed('p-2', { tx, workerId: 'a' })
    clock.advance(LEASE_MS)
    const takeover = await store.inbox.claim(
      { eventId: 'p-2', subject: 's', payload: '{}' },
      { leaseMs: LEASE_MS, workerId: 'b' },
    )
    expect(takeover.shouldProcess).toBe(true)
    tx.commit()
    expect(await store.inbox.get('p-2')).toMatchObject({ status: 'processing', claimedBy: 'b' })
  })
})
