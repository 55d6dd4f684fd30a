import { StorageError } from '@txbox/core'
import { createPool, type Pool } from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { classifyMySqlError } from '../src/errors.js'
import { createMySqlStore } from '../src/index.js'
import { freshPrefix, makePool, SKIP, SKIP_REASON } from './helpers.js'

/** What the driver threw, or a failure when it did not throw. */
const caught = async (run: () => Promise<unknown>): Promise<unknown> => {
  try {
    await run()
  } catch (error) {
    return error
  }
  throw new Error('expected the call to fail')
}

/** An error shaped as mysql2 builds it from a server error packet. */
const serverError = (errno: number, code: string, sqlState: string, message: string): Error =>
  Object.assign(new Error(message), { errno, code, sqlState, sqlMessage: message })

describe('classifyMySqlError on constructed driver errors', () => {
  it.each([
    [1213, 'ER_LOCK_DEADLOCK', '40001', 'conflict', true],
    [1205, 'ER_LOCK_WAIT_TIMEOUT', 'HY000', 'conflict', true],
    [1146, 'ER_NO_SUCH_TABLE', '42S02', 'schema', false],
    [1054, 'ER_BAD_FIELD_ERROR', '42S22', 'schema', false],
    [1176, 'ER_KEY_DOES_NOT_EXITS', '42000', 'schema', false],
    [1049, 'ER_BAD_DB_ERROR', '42000', 'schema', false],
    [1045, 'ER_ACCESS_DENIED_ERROR', '28000', 'permission', false],
    [1142, 'ER_TABLEACCESS_DENIED_ERROR', '42000', 'permission', false],
    [1040, 'ER_CON_COUNT_ERROR', '08004', 'throttled', true],
    [1226, 'ER_USER_LIMIT_REACHED', '42000', 'throttled', true],
    [1153, 'ER_NET_PACKET_TOO_LARGE', '08S01', 'limit', false],
    [1406, 'ER_DATA_TOO_LONG', '22001', 'limit', false],
    [3024, 'ER_QUERY_TIMEOUT', 'HY000', 'timeout', true],
    [1969, 'ER_STATEMENT_TIMEOUT', '70100', 'timeout', true],
    [1053, 'ER_SERVER_SHUTDOWN', '08S01', 'unavailable', true],
    [1927, 'ER_CONNECTION_KILLED', '70100', 'unavailable', true],
    [1290, 'ER_OPTION_PREVENTS_STATEMENT', 'HY000', 'unavailable', true],
    [1062, 'ER_DUP_ENTRY', '23000', 'unknown', false],
    [1064, 'ER_PARSE_ERROR', '42000', 'unknown', false],
  ] as const)(
    'errno %i (%s, SQLSTATE %s) is %s, retryable %s',
    (errno, code, sqlState, reason, retryable) => {
      const failure = classifyMySqlError(serverError(errno, code, sqlState, 'the server said no'))
      expect(failure).toMatchObject({ reason, retryable })
      // A missing table, column or index says what to do; a missing database is the URL's fault.
      const hint = [1146, 1054, 1176].includes(errno) ? ': did you run migrate()?' : ''
      expect(failure.detail).toBe(`the server said no (${code}, errno ${errno}, SQLSTATE ${sqlState})${hint}`)
    },
  )

  it.each([
    ['ECONNRESET', 'unavailable', true],
    ['PROTOCOL_CONNECTION_LOST', 'unavailable', true],
    ['PROTOCOL_ENQUEUE_AFTER_QUIT', 'unavailable', false],
    ['ENOTFOUND', 'unavailable', false],
    ['ETIMEDOUT', 'timeout', true],
    ['PROTOCOL_SEQUENCE_TIMEOUT', 'timeout', true],
  ] as const)('client code %s is %s, retryable %s', (code, reason, retryable) => {
    const failure = classifyMySqlError(Object.assign(new Error('lost'), { code, fatal: true }))
    expect(failure).toMatchObject({ reason, retryable, detail: `lost (${code})` })
  })

  it('says unknown, not retryable, for anything it does not know, and never throws', () => {
    expect(classifyMySqlError(new TypeError('a bug'))).toEqual({
      reason: 'unknown',
      retryable: false,
      detail: 'a bug',
    })
    expect(classifyMySqlError('a string')).toMatchObject({ reason: 'unknown', retryable: false })
    expect(classifyMySqlError(null)).toMatchObject({ reason: 'unknown', retryable: false })
    expect(classifyMySqlError({ errno: 'not a number' })).toMatchObject({ reason: 'unknown' })
  })
})

describe.skipIf(SKIP)(
  `classifyMySqlError on real server errors${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`,
  () => {
    let pool: Pool
    const prefix = freshPrefix()
    const table = `\`${prefix}locks\``

    beforeAll(async () => {
      pool = makePool({ connectionLimit: 4 })
      await pool.query(`CREATE TABLE ${table} (id INT PRIMARY KEY, n INT NOT NULL) ENGINE=InnoDB`)
      await pool.query(`INSERT INTO ${table} (id, n) VALUES (1, 0), (2, 0)`)
    })

    afterAll(async () => {
      await pool?.query(`DROP TABLE IF EXISTS ${table}`)
      await pool?.end()
    })

    it('a missing table is schema, with the hint to migrate, through the repository', async () => {
      const broken = createMySqlStore({ pool, tablePrefix: 'missing_tables_' })
      const error = await caught(() => broken.outbox.get('x'))
      expect(error).toBeInstanceOf(StorageError)
      expect(error).toMatchObject({ reason: 'schema', retryable: false, operation: 'outbox.get' })
      expect((error as Error).message).toMatch(
        /^\[txbox\] \[mysql\] outbox\.get failed: Table '.*missing_tables_outbox' doesn't exist \(ER_NO_SUCH_TABLE, errno 1146, SQLSTATE 42S02\): did you run migrate\(\)\?$/,
      )
      const inbox = await caught(() => broken.inbox.isProcessed('x'))
      expect(inbox).toMatchObject({ reason: 'schema', operation: 'inbox.isProcessed' })
    })

    it('a deadlock victim is conflict, retryable', async () => {
      const a = await pool.getConnection()
      const b = await pool.getConnection()
      try {
        await a.beginTransaction()
        await b.beginTransaction()
        await a.query(`UPDATE ${table} SET n = n + 1 WHERE id = 1`)
        await b.query(`UPDATE ${table} SET n = n + 1 WHERE id = 2`)
        // Each waits for the other's row: InnoDB rolls one of them back at once.
        const outcomes = await Promise.allSettled([
          a.query(`UPDATE ${table} SET n = n + 1 WHERE id = 2`),
          b.query(`UPDATE ${table} SET n = n + 1 WHERE id = 1`),
        ])
        const rejected = outcomes.filter((outcome) => outcome.status === 'rejected')
        expect(rejected).toHaveLength(1)
        const failure = classifyMySqlError((rejected[0] as PromiseRejectedResult).reason)
        expect(failure).toMatchObject({ reason: 'conflict', retryable: true })
        expect(failure.detail).toContain('errno 1213')
      } finally {
        await a.rollback()
        await b.rollback()
        a.release()
        b.release()
      }
    })

    it('a lock wait timeout is conflict, retryable', async () => {
      const a = await pool.getConnection()
      const b = await pool.getConnection()
      try {
        await b.query('SET SESSION innodb_lock_wait_timeout = 1')
        await a.beginTransaction()
        await a.query(`SELECT n FROM ${table} WHERE id = 1 FOR UPDATE`)
        await b.beginTransaction()
        const error = await caught(() => b.query(`UPDATE ${table} SET n = n + 1 WHERE id = 1`))
        const failure = classifyMySqlError(error)
        expect(failure).toMatchObject({ reason: 'conflict', retryable: true })
        expect(failure.detail).toContain('errno 1205')
      } finally {
        await a.rollback()
        await b.rollback()
        await b.query('SET SESSION innodb_lock_wait_timeout = DEFAULT')
        a.release()
        b.release()
      }
    })

    it('a DATETIME out of range is limit, through the repository', async () => {
      const store = createMySqlStore({ pool, tablePrefix: prefix })
      await store.migrate()
      try {
        const error = await caught(() =>
          store.outbox.findOrCreate({
            eventId: 'far',
            subject: 's',
            payload: 'p',
            availableAt: new Date(Date.UTC(10000, 0)),
          }),
        )
        expect(error).toMatchObject({ name: 'StorageError', reason: 'limit', retryable: false })
      } finally {
        await pool.query(
          `DROP TABLE IF EXISTS \`${prefix}outbox\`, \`${prefix}outbox_keys\`, \`${prefix}inbox\`, \`${prefix}schema_version\``,
        )
      }
    })

    it('a closed pool is unavailable and not retryable (the application closed it)', async () => {
      const closed = makePool({ connectionLimit: 1 })
      await closed.end()
      const error = await caught(() => closed.query('SELECT 1'))
      expect(classifyMySqlError(error)).toMatchObject({ reason: 'unavailable', retryable: false })
      const store = createMySqlStore({ pool: closed })
      expect(await caught(() => store.outbox.get('x'))).toMatchObject({
        name: 'StorageError',
        reason: 'unavailable',
        retryable: false,
      })
    })

    it('a server nothing answers for is unavailable, retryable', async () => {
      // Port 1 on this host: nothing listens there, the connection is refused.
      const unreachable = createPool({ host: '127.0.0.1', port: 1, user: 'x', connectionLimit: 1 })
      try {
        const error = await caught(() => unreachable.query('SELECT 1'))
        expect(classifyMySqlError(error)).toMatchObject({ reason: 'unavailable', retryable: true })
        expect(classifyMySqlError(error).detail).toContain('ECONNREFUSED')
      } finally {
        await unreachable.end()
      }
    })

    it('bad credentials are permission', async () => {
      const url = new URL(process.env.TXBOX_MYSQL_URL as string)
      url.password = 'certainly-not-the-password'
      const wrong = createPool({ uri: url.href, connectionLimit: 1 })
      try {
        const error = await caught(() => wrong.query('SELECT 1'))
        expect(classifyMySqlError(error)).toMatchObject({ reason: 'permission', retryable: false })
      } finally {
        await wrong.end()
      }
    })
  },
)
