import { ManualClock, StorageError, ValidationError } from '@txbox/core'
import type { RowDataPacket } from 'mysql2/promise'
import { describe, expect, it } from 'vitest'
import { connectMySql } from '../src/index.js'
import { freshPrefix, MYSQL_URL, SKIP, SKIP_REASON } from './helpers.js'

describe('connectMySql without a server', () => {
  it('refuses what is not a mysql:// or mariadb:// URL, before building anything', () => {
    for (const url of ['postgres://localhost/app', 'localhost:3306', '']) {
      expect(() => connectMySql(url)).toThrow(ValidationError)
    }
    expect(() => connectMySql('http://x')).toThrow(
      /^\[txbox\] \[mysql\] url must start with mysql:\/\/ or mariadb:\/\/ \(e.g. mysql:\/\/.*\); got scheme http:$/,
    )
  })

  it('does not talk to the server while building: an unreachable one fails at the first call', async () => {
    const connection = connectMySql('mysql://u:p@127.0.0.1:1/app', { connectTimeoutMs: 1_000 })
    try {
      const error = await connection.serverVersion().catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(StorageError)
      expect(error).toMatchObject({ reason: 'unavailable', retryable: true, operation: 'serverVersion' })
      expect(connection.lastConnectionError()).toBeUndefined()
    } finally {
      await connection.close()
    }
  })

  it('validates the store options and leaves no pool behind', () => {
    expect(() => connectMySql('mysql://u:p@127.0.0.1:1/app', { prefix: 'bad-prefix' })).toThrow(
      ValidationError,
    )
  })
})

describe.skipIf(SKIP)(`connectMySql against a real server${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`, () => {
  it('builds, migrates, enqueues with the utf8mb4 charset, answers the server version, closes twice', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1))
    const prefix = freshPrefix()
    const connection = connectMySql(MYSQL_URL as string, { prefix, clock: clock.now, poolSize: 3 })
    try {
      expect(connection.store.tablePrefix).toBe(prefix)
      expect(await connection.serverVersion()).toMatch(/^(MariaDB|MySQL) \d+\.\d+\.\d+$/)
      await connection.store.migrate()
      const event = await connection.store.outbox.findOrCreate({
        eventId: 'c-1',
        subject: 's',
        payload: '😀',
      })
      expect(event).toMatchObject({ payload: '😀', enqueuedAt: new Date(Date.UTC(2026, 0, 1)) })
      const [[session]] = await connection.client.query<RowDataPacket[]>(
        'SELECT @@character_set_connection AS charset, @@collation_connection AS collation',
      )
      expect(session).toEqual({ charset: 'utf8mb4', collation: 'utf8mb4_bin' })
      expect(connection.client.pool.config.connectionLimit).toBe(3)
    } finally {
      await connection.client.query(
        `DROP TABLE IF EXISTS \`${prefix}outbox\`, \`${prefix}outbox_keys\`, \`${prefix}inbox\`, \`${prefix}schema_version\``,
      )
      await connection.close()
      await connection.close()
    }
    await expect(connection.store.outbox.get('c-1')).rejects.toMatchObject({ reason: 'unavailable' })
  })
})
