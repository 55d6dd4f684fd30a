import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Clock } from '@txbox/core'
import Database from 'better-sqlite3'
import { createSqliteStore, type SqliteDatabase, type SqliteStore } from '../src/index.js'

/** A temporary directory for database files, removed by `cleanup()`. */
export const tempDirectory = (): { file: (name?: string) => string; cleanup: () => void } => {
  const directory = mkdtempSync(join(tmpdir(), 'txbox-sqlite-test-'))
  return {
    file: (name = 'test.db') => join(directory, name),
    cleanup: () => rmSync(directory, { recursive: true, force: true }),
  }
}

/** Opens a connection and a migrated store on it. */
export const openStore = async (
  location: string,
  options: { clock?: Clock; tablePrefix?: string; maxEventBytes?: number } = {},
): Promise<{ db: SqliteDatabase; store: SqliteStore }> => {
  const db = new Database(location)
  const store = createSqliteStore({ db, ...options })
  await store.migrate()
  return { db, store }
}

export const event = (
  eventId: string,
  extra: { payload?: string; headers?: string; availableAt?: Date } = {},
) => ({
  eventId,
  subject: 'orders.created',
  payload: extra.payload ?? JSON.stringify({ eventId }),
  ...(extra.headers === undefined ? {} : { headers: extra.headers }),
  ...(extra.availableAt === undefined ? {} : { availableAt: extra.availableAt }),
})

export const LEASE = { leaseMs: 30_000 } as const
