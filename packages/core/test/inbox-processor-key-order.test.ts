import { describe, expect, it } from 'vitest'
import { createMemoryStore, type InboxHandler, InboxProcessor, ManualClock } from '../src/index.js'
import { message } from './helpers.js'

const keyed = (eventId: string, orderingKey: string, keySeq: number | undefined, deliveryCount = 1) =>
  message({
    eventId,
    orderingKey,
    ...(keySeq === undefined ? {} : { keySeq }),
    streamSeq: keySeq ?? 1,
    deliveryCount,
  })

const setup = (handler: InboxHandler<undefined>, orderHoldMs?: number) => {
  const clock = new ManualClock()
  const store = createMemoryStore({ clock: clock.now })
  const processor = new InboxProcessor({
    inbox: store.inbox,
    source: { subscribe: async () => Promise.reject(new Error('handle() is called directly')) },
    handler,
    workerId: 'keyed-worker',
    clock: clock.now,
    random: () => 0,
    backoff: { baseMs: 100, maxMs: 1_000, jitter: 0 },
    maxDeliveries: 5,
    concurrency: 8,
    ...(orderHoldMs === undefined ? {} : { orderHoldMs }),
  })
  return { clock, store, processor }
}

/** A handler that records start/end per event and runs until the test releases it. */
const gatedHandler = () => {
  const log: string[] = []
  const gates = new Map<string, () => void>()
  let active = 0
  let maxActive = 0
  const handler: InboxHandler<undefined> = async ({ event }) => {
    active++
    maxActive = Math.max(maxActive, active)
    log.push(`start ${event.eventId}`)
    await new Promise<void>((resolve) => gates.set(event.eventId, resolve))
    log.push(`end ${event.eventId}`)
    active--
  }
  const release = async (eventId: string) => {
    for (let round = 0; round < 50 && !gates.has(eventId); round++)
      await new Promise<void>((resolve) => setImmediate(resolve))
    const open = gates.get(eventId)
    if (open === undefined) throw new Error(`${eventId} never started`)
    open()
  }
  return { handler, log, release, maxActive: () => maxActive }
}

describe('InboxProcessor with ordering keys', () => {
  it('runs the messages of one key one at a time in arrival order, other keys alongside', async () => {
    const gated = gatedHandler()
    const { processor } = setup(gated.handler)
    const a1 = keyed('a-1', 'order-a', 1)
    const a2 = keyed('a-2', 'order-a', 2)
    const b1 = keyed('b-1', 'order-b', 1)
    const handled = [processor.handle(a1), processor.handle(a2), processor.handle(b1)]
    await gated.release('b-1')
    await gated.release('a-1')
    await gated.release('a-2')
    await Promise.all(handled)
    expect(gated.log.indexOf('start a-2')).toBeGreaterThan(gated.log.indexOf('end a-1'))
    // Another key does not wait for order-a: b-1 started while a-1 was running.
    expect(gated.log.indexOf('start b-1')).toBeLessThan(gated.log.indexOf('end a-1'))
    expect(gated.maxActive()).toBe(2)
    expect([a1.settled, a2.settled, b1.settled]).toEqual([{ kind: 'ack' }, { kind: 'ack' }, { kind: 'ack' }])
  })

  it('holds later messages of a key while an earlier one awaits its redelivery', async () => {
    const seen: string[] = []
    let failFirst = true
    const { processor, store } = setup(async ({ event }) => {
      if (event.eventId === 'k-1' && failFirst) {
        failFirst = false
        throw new Error('downstream busy')
      }
      seen.push(event.eventId)
    })
    const first = keyed('k-1', 'order-k', 1)
    await processor.handle(first)
    expect(first.settled).toMatchObject({ kind: 'nak' })
    const second = keyed('k-2', 'order-k', 2)
    await processor.handle(second)
    expect(second.settled).toMatchObject({ kind: 'nak' })
    expect(await store.inbox.get('k-2')).toBeNull()
    // Another key is never held by order-k.
    const other = keyed('x-1', 'order-x', 1)
    await processor.handle(other)
    expect(other.settled).toEqual({ kind: 'ack' })
    // k-1 comes back and succeeds; k-3 arrives before k-2's redelivery: k-2 (put back) still holds it.
    const firstAgain = keyed('k-1', 'order-k', 1, 2)
    await processor.handle(firstAgain)
    expect(firstAgain.settled).toEqual({ kind: 'ack' })
    const third = keyed('k-3', 'order-k', 3)
    await processor.handle(third)
    expect(third.settled).toMatchObject({ kind: 'nak' })
    const secondAgain = keyed('k-2', 'order-k', 2, 2)
    await processor.handle(secondAgain)
    const thirdAgain = keyed('k-3', 'order-k', 3, 2)
    await processor.handle(thirdAgain)
    expect([secondAgain.settled, thirdAgain.settled]).toEqual([{ kind: 'ack' }, { kind: 'ack' }])
    expect(seen).toEqual(['x-1', 'k-1', 'k-2', 'k-3'])
    expect(processor.counters()).toMatchObject({ heldForOrder: 2, processed: 4, handlerErrors: 1 })
  })

  it('lets an earlier message pass a later one that was put back', async () => {
    const seen: string[] = []
    let failSecond = true
    const { processor } = setup(async ({ event }) => {
      if (event.eventId === 'k-2' && failSecond) {
        failSecond = false
        throw new Error('not yet')
      }
      seen.push(event.eventId)
    })
    await processor.handle(keyed('k-2', 'order-k', 2))
    const first = keyed('k-1', 'order-k', 1)
    await processor.handle(first)
    expect(first.settled).toEqual({ kind: 'ack' })
    await processor.handle(keyed('k-2', 'order-k', 2, 2))
    expect(seen).toEqual(['k-1', 'k-2'])
  })

  it('stops holding a key for a message not seen again within orderHoldMs', async () => {
    const { processor, clock } = setup(async ({ event }) => {
      if (event.eventId === 'k-1') throw new Error('poison')
    }, 60_000)
    await processor.handle(keyed('k-1', 'order-k', 1))
    const held = keyed('k-2', 'order-k', 2)
    await processor.handle(held)
    expect(held.settled).toMatchObject({ kind: 'nak' })
    clock.advance(60_001)
    // k-2 itself was put back at the start, so it holds nothing below it; k-1 has expired.
    const again = keyed('k-2', 'order-k', 2, 2)
    await processor.handle(again)
    expect(again.settled).toEqual({ kind: 'ack' })
  })

  it('releases the key when the holder is terminated after maxDeliveries', async () => {
    const { processor } = setup(async ({ event }) => {
      if (event.eventId === 'k-1') throw new Error('poison')
    })
    for (let delivery = 1; delivery <= 5; delivery++)
      await processor.handle(keyed('k-1', 'order-k', 1, delivery))
    const next = keyed('k-2', 'order-k', 2)
    await processor.handle(next)
    expect(next.settled).toEqual({ kind: 'ack' })
    expect(processor.counters()).toMatchObject({ terminated: 1, heldForOrder: 0 })
  })

  it('runs a keyed message without Txbox-Key-Seq in turn, never holding it', async () => {
    let fail = true
    const { processor } = setup(async () => {
      if (fail) {
        fail = false
        throw new Error('once')
      }
    })
    await processor.handle(keyed('n-1', 'order-n', undefined))
    const next = keyed('n-2', 'order-n', undefined)
    await processor.handle(next)
    expect(next.settled).toEqual({ kind: 'ack' })
  })

  it('refuses an orderHoldMs that is not a usable timer', () => {
    expect(() => setup(async () => {}, 0)).toThrow(/orderHoldMs/)
  })
})
