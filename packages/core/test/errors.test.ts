import { describe, expect, it } from 'vitest'
import {
  classifyUnknown,
  EventNotFoundError,
  LeaseLostError,
  ManualClock,
  PayloadTooLargeError,
  runStorageOperation,
  STORAGE_ERROR_REASONS,
  StorageError,
  TxboxError,
  ValidationError,
} from '../src/index.js'

describe('errors', () => {
  it('carry a stable code, the adapter and the [txbox] [<adapter>] prefix', () => {
    const cases: [TxboxError, string, string][] = [
      [new ValidationError('pg', 'bad'), 'ValidationError', 'VALIDATION'],
      [new EventNotFoundError('pg', 'e1'), 'EventNotFoundError', 'EVENT_NOT_FOUND'],
      [new LeaseLostError('pg', 'e1', 'w1'), 'LeaseLostError', 'LEASE_LOST'],
      [new PayloadTooLargeError('pg', 'e1', 500_000, 400_000), 'PayloadTooLargeError', 'PAYLOAD_TOO_LARGE'],
      [new StorageError('pg', 'outbox.claim', new Error('connection reset')), 'StorageError', 'STORAGE'],
    ]
    for (const [error, name, code] of cases) {
      expect(error).toBeInstanceOf(TxboxError)
      expect(error.name).toBe(name)
      expect(error.code).toBe(code)
      expect(error.adapter).toBe('pg')
      expect(error.message.startsWith('[txbox] [pg] ')).toBe(true)
    }
  })

  it('runStorageOperation wraps driver errors once, keeps the cause, and passes txbox errors through', async () => {
    const driverError = Object.assign(new Error('deadlock detected'), { code: '40P01' })
    const wrapped = await runStorageOperation('pg', 'outbox.claim', classifyUnknown, async () => {
      throw driverError
    }).catch((error: unknown) => error)
    expect(wrapped).toBeInstanceOf(StorageError)
    expect((wrapped as StorageError).cause).toBe(driverError)
    expect((wrapped as StorageError).message).toBe('[txbox] [pg] outbox.claim failed: deadlock detected')
    const own = new LeaseLostError('pg', 'e', 'w')
    await expect(
      runStorageOperation('pg', 'op', classifyUnknown, async () => Promise.reject(own)),
    ).rejects.toBe(own)
  })
})

describe('ManualClock', () => {
  it('moves only when told, and can advance on every read', () => {
    const clock = new ManualClock(1_000)
    expect(clock.now().getTime()).toBe(1_000)
    expect(clock.now().getTime()).toBe(1_000)
    clock.advance(500)
    expect(clock.now().getTime()).toBe(1_500)
    clock.setAutoAdvance(1)
    expect([clock.now().getTime(), clock.now().getTime()]).toEqual([1_500, 1_501])
    expect(clock.peekMs()).toBe(1_502)
  })

  it('a StorageError carries the reason and retryability its adapter classified, unknown by default', async () => {
    const plain = new StorageError('pg', 'outbox.claim', new Error('x'))
    expect([plain.reason, plain.retryable]).toEqual(['unknown', false])
    const deadlock = Object.assign(new Error('deadlock detected'), { code: '40P01' })
    const classified = await runStorageOperation(
      'pg',
      'outbox.claim',
      (error) =>
        (error as { code?: string }).code === '40P01'
          ? { reason: 'conflict', retryable: true, detail: 'deadlock detected [SQLSTATE 40P01]' }
          : { reason: 'unknown', retryable: false },
      async () => {
        throw deadlock
      },
    ).catch((error: unknown) => error as StorageError)
    expect(classified).toBeInstanceOf(StorageError)
    expect([classified.reason, classified.retryable, classified.cause]).toEqual(['conflict', true, deadlock])
    expect(classified.message).toBe('[txbox] [pg] outbox.claim failed: deadlock detected [SQLSTATE 40P01]')
    expect(STORAGE_ERROR_REASONS).toContain(classified.reason)
  })
})
