import { describe, expect, it } from 'vitest'
import { createMemoryStore, ManualClock } from '../src/index.js'

/**
 * Rules of CONTRACT.md the reference store keeps that no conformance case reaches yet
 * (docs/CONFORMANCE.md lists them as "not killed"): pinned here so the reference stays right
 * while a case for every adapter is still to be written.
 */
const event = (eventId: string, availableAt?: Date) => ({
  eventId,
  subject: 'orders.created',
  payload: '{}',
  ...(availableAt === undefined ? {} : { availableAt }),
})
const lease = { leaseMs: 60_000, workerId: 'w' }

describe('the memory reference store', () => {
  it('lists failed inbox messages oldest received first, even when the clock went back, and by arrival on a tie', async () => {
    const clock = new ManualClock(new Date('2026-01-01T00:10:00Z'))
    const { inbox } = createMemoryStore({ clock: clock.now })
    await inbox.findOrCreate(event('late-clock'))
    clock.set(new Date('2026-01-01T00:05:00Z'))
    for (const id of ['tie-1', 'tie-2', 'tie-3']) await inbox.findOrCreate(event(id))
    for (const id of ['tie-3', 'tie-2', 'late-clock', 'tie-1']) await inbox.markAsFailed(id, 'x')
    expect((await inbox.getFailedEvents()).map((e) => e.eventId)).toEqual([
      'tie-1',
      'tie-2',
      'tie-3',
      'late-clock',
    ])
  })

  it('keeps the first event when two open transactions enqueue one id and both commit', async () => {
    const store = createMemoryStore({ clock: new ManualClock().now })
    const first = store.begin()
    const second = store.begin()
    await store.outbox.findOrCreate({ ...event('a'), payload: 'first' }, { tx: first })
    await store.outbox.findOrCreate({ ...event('a'), payload: 'second' }, { tx: second })
    first.commit()
    second.commit()
    expect((await store.outbox.get('a'))?.payload).toBe('first')
    expect(store.outbox.snapshot()).toHaveLength(1)
  })

  it('commits a transactional markAsProcessed whose message was processed and cleaned up meanwhile, without recreating it', async () => {
    const clock = new ManualClock(new Date('2026-01-01T00:00:00Z'))
    const store = createMemoryStore({ clock: clock.now })
    await store.inbox.claim(event('a'), lease)
    const tx = store.begin()
    await store.inbox.markAsProcessed('a', { tx })
    await store.inbox.markAsProcessed('a')
    clock.advance(2 * 86_400_000)
    expect(await store.inbox.cleanup(1)).toBe(1)
    expect(() => tx.commit()).not.toThrow()
    expect(await store.inbox.get('a')).toBeNull()
  })

  it('keeps availableAt when an event is dead-lettered', async () => {
    const clock = new ManualClock(new Date('2026-01-01T00:10:00Z'))
    const { outbox } = createMemoryStore({ clock: clock.now })
    const due = new Date('2026-01-01T00:01:00Z')
    await outbox.findOrCreate(event('a', due))
    await outbox.claim(lease)
    await outbox.markAsFailed('a', 'boom', { workerId: 'w' })
    const stored = await outbox.get('a')
    expect(stored?.status).toBe('failed')
    expect(stored?.availableAt).toEqual(due)
  })
})
