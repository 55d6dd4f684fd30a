import { ManualClock, PayloadTooLargeError, StorageError, ValidationError } from '@txbox/core'
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { createPostgresStore, createPostgresWakeup, defaultChannel, SQLSTATE } from '../src/index.js'
import { freshSchema, newPool, noServer, skipReason } from './helpers.js'

describe('options', () => {
  // A pool that is never connected: validation happens before any I/O.
  const pool = new pg.Pool({ connectionString: 'postgres://nobody@127.0.0.1:1/none' })
  afterAll(() => pool.end())

  it('validates schema, tablePrefix and channel as identifiers', () => {
    expect(() => createPostgresStore({ pool, schema: 'bad-name' })).toThrow(ValidationError)
    expect(() => createPostgresStore({ pool, tablePrefix: 'x"; DROP TABLE y; --' })).toThrow(ValidationError)
    expect(() => createPostgresStore({ pool, tablePrefix: 'p'.repeat(44) })).toThrow(/at most 43/)
    expect(() => createPostgresStore({ pool, channel: 'with space' })).toThrow(ValidationError)
    expect(() => createPostgresStore({ pool: {} as pg.Pool })).toThrow(/pg Pool/)
    expect(() => createPostgresWakeup({ schema: 'x' })).toThrow(/exactly one/)
  })

  it('derives a channel per namespace that fits 63 bytes', () => {
    expect(defaultChannel('public', 'txbox_')).toBe('txbox_outbox')
    expect(defaultChannel('app', 'txbox_')).toBe('app_txbox_outbox')
    const long = defaultChannel('s'.repeat(63), 'p'.repeat(43))
    expect(long.length).toBeLessThanOrEqual(63)
    expect(long).not.toBe(defaultChannel('s'.repeat(63), 'q'.repeat(43)))
    const store = createPostgresStore({ pool })
    expect(store.capabilities).toEqual({
      transactions: 'native',
      claim: 'skip-locked',
      maxEventBytes: 1_048_576,
    })
    expect(Object.isFrozen(store.capabilities)).toBe(true)
  })

  it('takes maxEventBytes, shows it on capabilities, and refuses bigger events before any I/O', async () => {
    const store = createPostgresStore({ pool, maxEventBytes: 200 })
    expect(store.capabilities.maxEventBytes).toBe(200)
    expect(store.outbox.maxEventBytes).toBe(200)
    const huge = { eventId: 'huge', subject: 's', payload: 'x'.repeat(200) }
    await expect(store.outbox.findOrCreate(huge)).rejects.toBeInstanceOf(PayloadTooLargeError)
    await expect(store.outbox.findOrCreateMany([huge])).rejects.toBeInstanceOf(PayloadTooLargeError)
    expect(() => createPostgresStore({ pool, maxEventBytes: 0 })).toThrow(
      /maxEventBytes must be a positive integer/,
    )
  })

  it('rejects bad input with ValidationError before touching the (unreachable) server', async () => {
    const { outbox, inbox } = createPostgresStore({ pool, clock: new ManualClock().now })
    await expect(outbox.findOrCreate({ eventId: '', subject: 's', payload: 'p' })).rejects.toThrow(
      ValidationError,
    )
    await expect(outbox.claim({ leaseMs: 0, workerId: 'w' })).rejects.toThrow(ValidationError)
    await expect(
      inbox.claim({ eventId: 'a', subject: 's', payload: 'p' }, { leaseMs: 1, workerId: '' }),
    ).rejects.toThrow(ValidationError)
    expect(await outbox.findOrCreateMany([])).toEqual([])
  })
})

describe.skipIf(noServer)(`driver errors${noServer ? ` (skipped: ${skipReason})` : ''}`, () => {
  const pool = newPool(2)
  afterAll(() => pool.end())

  it('are StorageError with the pg error as cause and its SQLSTATE in the message', async () => {
    // Never migrated: the table does not exist.
    const { outbox, inbox } = createPostgresStore({ pool, schema: freshSchema() })
    const error = await outbox.claim({ leaseMs: 1000, workerId: 'w' }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StorageError)
    expect((error as StorageError).operation).toBe('outbox.claim')
    expect((error as StorageError).message).toMatch(
      /^\[txbox\] \[postgres\] outbox\.claim failed: .*42P01.*migrate/,
    )
    expect(((error as StorageError).cause as { code: string }).code).toBe(SQLSTATE.undefinedTable)
    await expect(inbox.findOrCreate({ eventId: 'a', subject: 's', payload: 'p' })).rejects.toThrow(
      StorageError,
    )
  })
})
