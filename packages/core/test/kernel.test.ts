import { describe, expect, it } from 'vitest'
import {
  type ClaimRequest,
  EventNotFoundError,
  type FencedOutcome,
  LeaseLostError,
  ManualClock,
  MemoryInboxRepository,
  MemoryOutboxRepository,
  type NewOutboxEventParams,
  type OutboxChange,
  type OutboxEvent,
  StorageError,
  ValidationError,
} from '../src/index.js'

/**
 * The kernel as an adapter author meets it: a store that implements primitives gets the
 * contract's rules from core. These tests drive the kernel through the memory store's
 * primitives, watching what each primitive receives and feeding it failures.
 */
class WatchedOutbox extends MemoryOutboxRepository {
  readonly calls: { primitive: string; args: unknown[] }[] = []
  /** When set, the next primitive call throws it (as a driver would). */
  fault: unknown
  /** When set, `applyFenced` answers this instead of the real outcome. */
  fencedAnswer: FencedOutcome | undefined
  /** When set, `insertEvents` leaves these ids out of its answer. */
  forget = new Set<string>()

  constructor(clock: ManualClock) {
    super({ clock: clock.now })
  }

  #watch(primitive: string, args: unknown[]): void {
    this.calls.push({ primitive, args })
    const fault = this.fault
    this.fault = undefined
    if (fault !== undefined) throw fault
  }

  protected override async insertEvents(
    events: readonly NewOutboxEventParams[],
    now: Date,
    tx: undefined,
  ): Promise<ReadonlyMap<string, OutboxEvent>> {
    this.#watch('insertEvents', [events.map((event) => event.eventId), now])
    const stored = new Map(await super.insertEvents(events, now, tx))
    for (const id of this.forget) stored.delete(id)
    return stored
  }

  protected override async applyFenced(eventId: string, change: OutboxChange, workerId: string | undefined) {
    this.#watch('applyFenced', [eventId, change, workerId])
    const outcome = await super.applyFenced(eventId, change, workerId)
    return this.fencedAnswer ?? outcome
  }

  protected override async markSent(ids: readonly string[], workerId: string | undefined, now: Date) {
    this.#watch('markSent', [ids, workerId])
    return super.markSent(ids, workerId, now)
  }

  protected override async renewLeases(ids: readonly string[], workerId: string, leaseUntil: Date) {
    this.#watch('renewLeases', [ids, workerId, leaseUntil])
    return super.renewLeases(ids, workerId, leaseUntil)
  }

  protected override async requeue(ids: readonly string[], now: Date) {
    this.#watch('requeue', [ids])
    return super.requeue(ids, now)
  }

  protected override async claimEvents(request: ClaimRequest) {
    this.#watch('claimEvents', [request])
    return super.claimEvents(request)
  }

  protected override async deleteSent(cutoff: Date, limit: number) {
    this.#watch('deleteSent', [cutoff, limit])
    return super.deleteSent(cutoff, limit)
  }
}

const event = (eventId: string) => ({ eventId, subject: 'orders.created', payload: '{}' })

describe('the repository kernel', () => {
  it('validates before any primitive runs', async () => {
    const outbox = new WatchedOutbox(new ManualClock())
    await expect(outbox.markManyAsSent(['ok', ''])).rejects.toBeInstanceOf(ValidationError)
    await expect(outbox.claim({ leaseMs: 0, workerId: 'w' })).rejects.toBeInstanceOf(ValidationError)
    // An untyped caller's options that are not an object: refused, never read as "no tx".
    await expect(outbox.findOrCreate(event('a'), 5 as never)).rejects.toThrow(
      '[txbox] [memory] outbox: options must be an object; got 5',
    )
    await expect(new MemoryInboxRepository().markAsProcessed('a', 'tx' as never)).rejects.toThrow(
      'inbox: options must be an object',
    )
    expect(outbox.calls).toEqual([])
  })

  it('hands primitives distinct ids and answers every input position, first occurrence winning', async () => {
    const clock = new ManualClock(new Date('2026-01-01T00:00:00Z'))
    const outbox = new WatchedOutbox(clock)
    const stored = await outbox.findOrCreateMany([
      { ...event('a'), payload: 'first' },
      event('b'),
      { ...event('a'), payload: 'second' },
    ])
    expect(outbox.calls[0]).toEqual({ primitive: 'insertEvents', args: [['a', 'b'], clock.now()] })
    expect(stored.map((e) => [e.eventId, e.payload])).toEqual([
      ['a', 'first'],
      ['b', '{}'],
      ['a', 'first'],
    ])
    // Two positions, two objects: a caller mutating one does not change the other.
    expect(stored[0]).not.toBe(stored[2])

    const claimed = await outbox.claim({ leaseMs: 1_000, workerId: 'w' })
    expect(claimed.map((e) => e.eventId)).toEqual(['a', 'b'])
    const renewed = await outbox.renewLease(['a', 'x', 'a'], { leaseMs: 1_000, workerId: 'w' })
    expect(outbox.calls.at(-1)?.args[0]).toEqual(['a', 'x'])
    expect(renewed).toEqual(['a', 'a'])
    // With a fence, the second mark of a repeated id finds the event sent already.
    expect(await outbox.markManyAsSent(['a', 'a', 'b'], { workerId: 'w' })).toEqual(['a'])
    expect(outbox.calls.at(-1)).toEqual({ primitive: 'markSent', args: [['a', 'b'], 'w'] })
  })

  it("never writes to the caller's params, nor keeps them: frozen input is taken and left as it was", async () => {
    const clock = new ManualClock(new Date('2026-01-01T00:00:00Z'))
    const outbox = new WatchedOutbox(clock)
    const later = new Date('2026-01-02T00:00:00Z')
    const params = [event('a'), { ...event('b'), availableAt: later }, event('a')].map((p) =>
      Object.freeze(p),
    )
    const before = structuredClone(params)
    const stored = await outbox.findOrCreateMany(params)
    expect(params).toStrictEqual(before)
    expect(stored.map((e) => e.availableAt)).toEqual([clock.now(), later, clock.now()])
    // The caller's Date is not the stored one: moving it later changes nothing stored.
    later.setTime(0)
    expect((await outbox.get('b'))?.availableAt).toEqual(new Date('2026-01-02T00:00:00Z'))
    // What findOrCreate answers is the caller's to change: the stored event stays as it was.
    const single = await outbox.findOrCreate(Object.freeze(event('c')))
    single.payload = 'changed'
    expect((await outbox.get('c'))?.payload).toBe('{}')
  })

  it('turns primitive outcomes into the contract errors', async () => {
    const outbox = new WatchedOutbox(new ManualClock())
    await outbox.findOrCreate(event('a'))
    await expect(outbox.markAsSent('nope')).rejects.toBeInstanceOf(EventNotFoundError)
    await expect(outbox.markAsSent('a', { workerId: 'w' })).rejects.toBeInstanceOf(LeaseLostError)
    // "lost" without a fence can only be a broken store: it must not pass as success.
    outbox.fencedAnswer = 'lost'
    const error = await outbox.markAsFailed('a', 'boom').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StorageError)
    expect((error as StorageError).operation).toBe('outbox.markAsFailed')
  })

  it('reports the first missing id of a redrive in input order, after requeueing the others', async () => {
    const outbox = new WatchedOutbox(new ManualClock())
    await outbox.findOrCreateMany([event('a'), event('b')])
    await outbox.markAsFailed('a', 'x')
    await outbox.markAsFailed('b', 'x')
    const error = await outbox.requeueFailed(['a', 'm2', 'b', 'm1', 'm2']).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(EventNotFoundError)
    expect((error as EventNotFoundError).eventId).toBe('m2')
    expect(outbox.calls.at(-1)?.args[0]).toEqual(['a', 'm2', 'b', 'm1'])
    expect((await outbox.getCountByStatus()).pending).toBe(2)
  })

  it('refuses an answer that lacks a stored event instead of inventing one', async () => {
    const outbox = new WatchedOutbox(new ManualClock())
    outbox.forget.add('b')
    const error = await outbox.findOrCreateMany([event('a'), event('b')]).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StorageError)
    expect((error as StorageError).message).toContain('"b"')
  })

  it('wraps a driver error once, with the operation, the cause and the classification', async () => {
    const outbox = new WatchedOutbox(new ManualClock())
    const driverError = new Error('socket hang up')
    outbox.fault = driverError
    const error = await outbox.claim({ leaseMs: 1_000, workerId: 'w' }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StorageError)
    const storage = error as StorageError
    expect(storage.operation).toBe('outbox.claim')
    expect(storage.cause).toBe(driverError)
    // The memory store has no driver to classify: unknown and not retryable.
    expect([storage.reason, storage.retryable]).toEqual(['unknown', false])
    expect(storage.message).toBe('[txbox] [memory] outbox.claim failed: socket hang up')
    // txbox's own errors thrown by a primitive pass through untouched.
    const own = new EventNotFoundError('memory', 'z')
    outbox.fault = own
    await expect(outbox.claim({ leaseMs: 1_000, workerId: 'w' })).rejects.toBe(own)
  })

  it('sweeps in batches until one comes back short', async () => {
    const clock = new ManualClock(new Date('2026-01-01T00:00:00Z'))
    const outbox = new WatchedOutbox(clock)
    await outbox.findOrCreateMany([event('a'), event('b')])
    await outbox.markManyAsSent(['a', 'b'])
    clock.advance(2 * 86_400_000)
    expect(await outbox.cleanup(1)).toBe(2)
    const sweeps = outbox.calls.filter((call) => call.primitive === 'deleteSent')
    expect(sweeps).toHaveLength(1)
    expect(sweeps[0]?.args[1]).toBe(10_000)
  })

  it('names the inbox side in inbox operations', async () => {
    const inbox = new MemoryInboxRepository()
    await expect(inbox.markAsFailed('missing', 'x')).rejects.toThrow('inbox event not found: "missing"')
    await expect(inbox.get('')).rejects.toThrow('[txbox] [memory] inbox: eventId')
  })
})
