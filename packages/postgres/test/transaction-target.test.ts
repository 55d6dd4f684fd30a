import { ValidationError } from '@txbox/core'
import { Kysely, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPostgresStore } from '../src/index.js'
import { kyselyTransaction } from '../src/orm/kysely.js'
import { createNamespace, event, inTransaction, type Namespace, noServer, skipReason } from './helpers.js'
import { otherDatabaseUrl } from './orm/integration-cases.js'

// Before its first write through a caller's transaction the store checks that the
// transaction is on its own database; that check must never wait for a client of the
// store's pool, which the caller may be holding.
describe.skipIf(noServer)(`{ tx } target checks${noServer ? ` (skipped: ${skipReason})` : ''}`, () => {
  let ns: Namespace

  beforeAll(async () => {
    ns = await createNamespace()
  })
  afterAll(async () => {
    await ns?.dispose()
  })

  it('transactions holding every client of the store pool (Kysely on that pool) still enqueue', {
    timeout: 30_000,
  }, async () => {
    const pool = new pg.Pool({ connectionString: process.env.TXBOX_POSTGRES_URL, max: 2 })
    const store = createPostgresStore({ pool, schema: ns.schema, clock: ns.clock.now })
    const db = new Kysely<Record<string, never>>({ dialect: new PostgresDialect({ pool }) })
    try {
      let started = 0
      let release: () => void = () => undefined
      const allHeld = new Promise<void>((resolve) => {
        release = resolve
      })
      await Promise.all(
        ['k1', 'k2'].map((id) =>
          db.transaction().execute(async (trx) => {
            await sql`SELECT 1`.execute(trx)
            started++
            if (started === 2) release()
            await allHeld
            expect(pool.idleCount).toBe(0)
            await store.outbox.findOrCreate(event(id), { tx: kyselyTransaction(trx) })
          }),
        ),
      )
      expect((await ns.store.outbox.get('k1'))?.status).toBe('pending')
      expect((await ns.store.outbox.get('k2'))?.status).toBe('pending')
    } finally {
      await db.destroy()
    }
  })

  it("refuses another database by its name while the store's pool cannot be asked", {
    timeout: 30_000,
  }, async () => {
    const pool = new pg.Pool({ connectionString: process.env.TXBOX_POSTGRES_URL, max: 1 })
    const store = createPostgresStore({ pool, schema: ns.schema, clock: ns.clock.now })
    const other = new pg.Pool({ connectionString: otherDatabaseUrl(), max: 1 })
    try {
      await inTransaction(pool, async () => {
        // The store pool's only client is held here: its identity cannot be asked.
        await inTransaction(other, async (client) => {
          const attempt = store.outbox.findOrCreate(event('other-by-name'), { tx: client })
          await expect(attempt).rejects.toThrow(ValidationError)
          await expect(attempt).rejects.toThrow(
            /connected to database "postgres".*store's pool is connected to database "/,
          )
        })
      })
      expect(await ns.store.outbox.get('other-by-name')).toBeNull()
    } finally {
      await other.end()
      await pool.end()
    }
  })
})
