import { describe, expect, it } from 'vitest'
import {
  EventNotFoundError,
  ManualClock,
  MemoryInboxRepository,
  MemoryOutboxRepository,
  StorageError,
} from '../src/index.js'

/**
 * The kernel's side of a driver failure, for every public method: the memory store has no
 * driver, so the conformance suite's driver-failure cases skip it, and only these tests see
 * the operation names and the default classification the kernel gives every adapter.
 */
const driverError = new Error('connection reset by peer')
const fail = async (): Promise<never> => {
  throw driverError
}

/** Every primitive fails as a dropped connection would. */
class BrokenOutbox extends MemoryOutboxRepository {
  protected override insertEvents() {
    return fail()
  }
  protected override setPublishing() {
    return fail()
  }
  protected override applyFenced() {
    return fail()
  }
  protected override selectPending() {
    return fail()
  }
  protected override deleteSent() {
    return fail()
  }
  protected override resetPublishing() {
    return fail()
  }
  protected override countStatuses() {
    return fail()
  }
  protected override claimEvents() {
    return fail()
  }
  protected override renewLeases() {
    return fail()
  }
  protected override markSent() {
    return fail()
  }
  protected override requeue() {
    return fail()
  }
  protected override selectFailed() {
    return fail()
  }
  protected override read() {
    return fail()
  }
}

class BrokenInbox extends MemoryInboxRepository {
  protected override recordDelivery() {
    return fail()
  }
  protected override claimDelivery() {
    return fail()
  }
  protected override setProcessed() {
    return fail()
  }
  protected override setFailed() {
    return fail()
  }
  protected override deleteProcessed() {
    return fail()
  }
  protected override failStale() {
    return fail()
  }
  protected override countStatuses() {
    return fail()
  }
  protected override selectFailed() {
    return fail()
  }
  protected override read() {
    return fail()
  }
}

/** The StorageError `call` rejects with; anything else fails the test. */
const storageError = async (call: Promise<unknown>): Promise<StorageError> => {
  const error = await call.then(
    () => undefined,
    (caught: unknown) => caught,
  )
  expect(error).toBeInstanceOf(StorageError)
  return error as StorageError
}

const event = (eventId: string) => ({ eventId, subject: 'orders.created', payload: '{}' })
const lease = { leaseMs: 1_000, workerId: 'w' }

describe('a driver failure in the kernel', () => {
  it('names the outbox operation, keeps the cause, and is unknown and not retryable without a classifier', async () => {
    const o = new BrokenOutbox({ clock: new ManualClock().now })
    const calls: [operation: string, call: () => Promise<unknown>][] = [
      ['findOrCreate', () => o.findOrCreate(event('a'))],
      ['findOrCreateMany', () => o.findOrCreateMany([event('a')])],
      ['markAsPublishing', () => o.markAsPublishing('a')],
      ['markAsSent', () => o.markAsSent('a')],
      ['markAsFailed', () => o.markAsFailed('a', 'x')],
      ['retryLater', () => o.retryLater('a', { errorMessage: 'x', delayMs: 10 })],
      ['findPending', () => o.findPending()],
      ['cleanup', () => o.cleanup(1)],
      ['resetStale', () => o.resetStale(1)],
      ['getCountByStatus', () => o.getCountByStatus()],
      ['claim', () => o.claim(lease)],
      ['renewLease', () => o.renewLease(['a'], lease)],
      ['markManyAsSent', () => o.markManyAsSent(['a'])],
      ['getFailedEvents', () => o.getFailedEvents()],
      ['requeueFailed', () => o.requeueFailed(['a'])],
      ['get', () => o.get('a')],
    ]
    for (const [operation, call] of calls) {
      const error = await storageError(call())
      expect(error.operation).toBe(`outbox.${operation}`)
      expect(error.message).toBe(`[txbox] [memory] outbox.${operation} failed: connection reset by peer`)
      expect(error.cause).toBe(driverError)
      expect([error.reason, error.retryable]).toEqual(['unknown', false])
    }
  })

  it('names the inbox operation the same way', async () => {
    const i = new BrokenInbox({ clock: new ManualClock().now })
    const calls: [operation: string, call: () => Promise<unknown>][] = [
      ['findOrCreate', () => i.findOrCreate(event('a'))],
      ['claim', () => i.claim(event('a'), lease)],
      ['markAsProcessed', () => i.markAsProcessed('a')],
      ['markAsFailed', () => i.markAsFailed('a', 'x')],
      ['isProcessed', () => i.isProcessed('a')],
      ['cleanup', () => i.cleanup(1)],
      ['resetStale', () => i.resetStale(1)],
      ['getCountByStatus', () => i.getCountByStatus()],
      ['getFailedEvents', () => i.getFailedEvents()],
      ['get', () => i.get('a')],
    ]
    for (const [operation, call] of calls) {
      const error = await storageError(call())
      expect(error.operation).toBe(`inbox.${operation}`)
      expect(error.message).toBe(`[txbox] [memory] inbox.${operation} failed: connection reset by peer`)
      expect(error.cause).toBe(driverError)
      expect([error.reason, error.retryable]).toEqual(['unknown', false])
    }
  })
})

describe('the kernel on ids', () => {
  it('says "inbox" in the not-found error of both inbox writes', async () => {
    const inbox = new MemoryInboxRepository()
    for (const call of [() => inbox.markAsProcessed('nope'), () => inbox.markAsFailed('nope', 'x')]) {
      const error = await call().catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(EventNotFoundError)
      expect((error as Error).message).toBe('[txbox] [memory] inbox event not found: "nope"')
    }
  })

  it('without a fence, applies a repeated id of markManyAsSent again and reports nothing lost', async () => {
    const outbox = new MemoryOutboxRepository()
    await outbox.findOrCreate(event('a'))
    expect(await outbox.markManyAsSent(['a', 'a'])).toEqual([])
    expect((await outbox.get('a'))?.status).toBe('sent')
  })
})
