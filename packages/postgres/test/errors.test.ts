import { ManualClock, PayloadTooLargeError, StorageError, ValidationError } from '@txbox/core'
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import {
  classifyPostgresError,
  createPostgresStore,
  createPostgresWakeup,
  defaultChannel,
  SQLSTATE,
} from '../src/index.js'
import { createNamespace, event, freshSchema, newPool, noServer, skipReason, url } from './helpers.js'

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
      orderingKeys: true,
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

/** A pg DatabaseError as the driver builds it from the server's ErrorResponse. */
const serverError = (code: string, message = `server said ${code}`): Error =>
  Object.assign(new Error(message), { code, severity: 'ERROR' })

/** A Node socket error as pg passes it on. */
const socketError = (code: string): Error =>
  Object.assign(new Error(`connect ${code} 127.0.0.1:5432`), { code, errno: -1, syscall: 'connect' })

describe('classifyPostgresError', () => {
  it.each([
    ['40001', 'conflict', true],
    ['40P01', 'conflict', true],
    ['55P03', 'timeout', true],
    ['57014', 'timeout', true],
    ['25P03', 'timeout', true],
    ['57P01', 'unavailable', true],
    ['57P02', 'unavailable', true],
    ['57P03', 'unavailable', true],
    ['25006', 'unavailable', true],
    ['08006', 'unavailable', true],
    ['08001', 'unavailable', true],
    ['3D000', 'unavailable', false],
    ['53300', 'throttled', true],
    ['53200', 'unavailable', true],
    ['53100', 'limit', false],
    ['53400', 'limit', false],
    ['54000', 'limit', false],
    ['42P01', 'schema', false],
    ['42P10', 'schema', false],
    ['42703', 'schema', false],
    ['42883', 'schema', false],
    ['3F000', 'schema', false],
    ['42501', 'permission', false],
    ['28P01', 'permission', false],
    ['23505', 'unknown', false],
    ['22P02', 'unknown', false],
  ] as const)('SQLSTATE %s is %s (retryable: %s), named in the detail', (code, reason, retryable) => {
    const failure = classifyPostgresError(serverError(code))
    expect(failure).toMatchObject({ reason, retryable })
    expect(failure.detail).toMatch(new RegExp(`^server said ${code} \\[SQLSTATE ${code}\\]`))
  })

  it('adds the known hints', () => {
    expect(classifyPostgresError(serverError('42P01')).detail).toMatch(/\(did you run migrate\(\)\?\)$/)
    expect(classifyPostgresError(serverError('40001')).detail).toMatch(/may retry its transaction\)$/)
    expect(classifyPostgresError(serverError('42P10')).detail).toMatch(
      /partitioning: \{ interval: 'daily' \}\)$/,
    )
  })

  it.each([
    ['ECONNREFUSED', 'unavailable', true],
    ['ECONNRESET', 'unavailable', true],
    ['EPIPE', 'unavailable', true],
    ['ENOTFOUND', 'unavailable', true],
    ['EHOSTUNREACH', 'unavailable', true],
    ['ETIMEDOUT', 'timeout', true],
  ] as const)(
    'socket error %s is %s (retryable: %s), never read as a SQLSTATE',
    (code, reason, retryable) => {
      const failure = classifyPostgresError(socketError(code))
      expect(failure).toEqual({ reason, retryable, detail: `connect ${code} 127.0.0.1:5432` })
    },
  )

  it.each([
    ['Cannot use a pool after calling end on the pool', 'unavailable', false],
    ['Client was closed and is not queryable', 'unavailable', false],
    ['timeout exceeded when trying to connect', 'timeout', true],
    ['Connection terminated due to connection timeout', 'timeout', true],
    ['Query read timeout', 'timeout', true],
    ['Connection terminated unexpectedly', 'unavailable', true],
    ['Client has encountered a connection error and is not queryable', 'unavailable', true],
    ['something else entirely', 'unknown', false],
  ] as const)('pg error "%s" is %s (retryable: %s)', (message, reason, retryable) => {
    expect(classifyPostgresError(new Error(message))).toEqual({ reason, retryable, detail: message })
  })

  it('never throws on what is not an Error', () => {
    expect(classifyPostgresError(undefined)).toEqual({
      reason: 'unknown',
      retryable: false,
      detail: 'undefined',
    })
    expect(classifyPostgresError('EPIPE')).toEqual({ reason: 'unknown', retryable: false, detail: 'EPIPE' })
    expect(classifyPostgresError({ code: 42 })).toMatchObject({ reason: 'unknown', retryable: false })
  })
})

/** The StorageError an operation rejects with. */
const storageError = async (operation: Promise<unknown>): Promise<StorageError> => {
  const error = await operation.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(StorageError)
  return error as StorageError
}

describe.skipIf(noServer)(
  `real server errors, classified${noServer ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    it('a missing table is schema, not retryable', async () => {
      const pool = newPool(1)
      try {
        const { inbox } = createPostgresStore({ pool, schema: freshSchema() })
        const error = await storageError(inbox.get('a'))
        expect(error).toMatchObject({ operation: 'inbox.get', reason: 'schema', retryable: false })
      } finally {
        await pool.end()
      }
    })

    it('an unreachable server is unavailable and retryable; an ended pool is unavailable for good', async () => {
      const nowhere = new pg.Pool({ connectionString: 'postgres://nobody@127.0.0.1:1/none', max: 1 })
      try {
        const error = await storageError(createPostgresStore({ pool: nowhere }).outbox.get('a'))
        expect(error).toMatchObject({ reason: 'unavailable', retryable: true })
        expect(error.message).toMatch(/ECONNREFUSED/)
      } finally {
        await nowhere.end()
      }
      const ns = await createNamespace()
      await ns.dispose()
      const error = await storageError(ns.store.outbox.findPending())
      expect(error).toMatchObject({
        operation: 'outbox.findPending',
        reason: 'unavailable',
        retryable: false,
      })
    })

    it('a serialization failure (REPEATABLE READ enqueue of an id committed meanwhile) is conflict', async () => {
      const ns = await createNamespace()
      const client = await ns.pool.connect()
      try {
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ')
        await client.query(`SELECT count(*) FROM "${ns.schema}".txbox_outbox`)
        await ns.store.outbox.findOrCreate(event('raced'))
        const error = await storageError(ns.store.outbox.findOrCreate(event('raced'), { tx: client }))
        expect(error).toMatchObject({ operation: 'outbox.findOrCreate', reason: 'conflict', retryable: true })
        expect(error.message).toMatch(/\[SQLSTATE 40001\] \(the caller may retry its transaction\)/)
      } finally {
        await client.query('ROLLBACK')
        client.release()
        await ns.dispose()
      }
    })

    it('a deadlock is conflict', async () => {
      const ns = await createNamespace()
      for (const id of ['one', 'two']) await ns.store.inbox.findOrCreate(event(id))
      const [a, b] = [await ns.pool.connect(), await ns.pool.connect()]
      const lock = (client: pg.PoolClient, id: string) =>
        client.query(`UPDATE "${ns.schema}".txbox_inbox SET deliveries = deliveries WHERE event_id = $1`, [
          id,
        ])
      try {
        await a.query('BEGIN')
        await b.query('BEGIN')
        await lock(a, 'one')
        await lock(b, 'two')
        // Both sides of the cycle are store calls: whichever backend's deadlock check finds the
        // cycle first (a waits first, but under load b's check may fire first), the aborted one
        // is a store call and must come back classified; the other then gets its lock.
        const pid = (await a.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid
        const settle = (call: Promise<void>) =>
          call.then(
            () => 'done' as const,
            (e: unknown) => e,
          )
        const marked = settle(ns.store.inbox.markAsProcessed('two', { tx: a }))
        const deadline = Date.now() + 10_000
        for (;;) {
          const waiting = await ns.pool.query(
            `SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'`,
            [pid],
          )
          if (waiting.rowCount !== 0) break
          if (Date.now() > deadline) throw new Error('the store call never waited for its lock')
        }
        const other = settle(ns.store.inbox.markAsProcessed('one', { tx: b }))
        const outcomes = await Promise.all([marked, other])
        const failures = outcomes.filter((outcome) => outcome !== 'done')
        expect(failures).toHaveLength(1)
        const [error] = failures
        expect(error).toBeInstanceOf(StorageError)
        expect(error).toMatchObject({
          operation: 'inbox.markAsProcessed',
          reason: 'conflict',
          retryable: true,
        })
        expect((error as StorageError).message).toMatch(/SQLSTATE 40P01/)
      } finally {
        await a.query('ROLLBACK')
        await b.query('ROLLBACK')
        a.release()
        b.release()
        await ns.dispose()
      }
    })

    it('lock_timeout and statement_timeout are timeout, retryable', async () => {
      const ns = await createNamespace()
      await ns.store.outbox.findOrCreate(event('held'))
      const holder = await ns.pool.connect()
      const pools = [
        new pg.Pool({ connectionString: url, max: 1, lock_timeout: 50 }),
        new pg.Pool({ connectionString: url, max: 1, statement_timeout: 50 }),
      ]
      try {
        await holder.query('BEGIN')
        await holder.query(`SELECT 1 FROM "${ns.schema}".txbox_outbox WHERE event_id = 'held' FOR UPDATE`)
        for (const [pool, code] of [
          [pools[0]!, '55P03'],
          [pools[1]!, '57014'],
        ] as const) {
          const error = await storageError(ns.storeOn(pool).outbox.markAsPublishing('held'))
          expect(error).toMatchObject({
            operation: 'outbox.markAsPublishing',
            reason: 'timeout',
            retryable: true,
          })
          expect(error.message).toContain(`SQLSTATE ${code}`)
        }
      } finally {
        await holder.query('ROLLBACK')
        holder.release()
        await Promise.all(pools.map((pool) => pool.end()))
        await ns.dispose()
      }
    })

    it('a role without privileges on the schema is permission', async () => {
      const ns = await createNamespace()
      const role = `txbox_noperm_${ns.schema.slice('txbox_t_'.length)}`
      await ns.pool.query(`CREATE ROLE "${role}" NOLOGIN`)
      const restricted = new pg.Pool({ connectionString: url, max: 1, options: `-c role=${role}` })
      try {
        const error = await storageError(ns.storeOn(restricted).outbox.get('a'))
        expect(error).toMatchObject({ reason: 'permission', retryable: false })
        expect(error.message).toContain(`SQLSTATE ${SQLSTATE.insufficientPrivilege}`)
      } finally {
        await restricted.end()
        await ns.dispose()
        await (async () => {
          const pool = newPool(1)
          await pool.query(`DROP ROLE IF EXISTS "${role}"`)
          await pool.end()
        })()
      }
    })
  },
)
