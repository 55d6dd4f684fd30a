import { randomBytes } from 'node:crypto'
import { ValidationError } from '@txbox/core'
import type { Pool } from 'mysql2/promise'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createMySqlStore, type MySqlStore, type MySqlTransaction } from '../../src/index.js'
import { freshStore, MYSQL_URL, makePool, ordersTable, poolCounts, SKIP, SKIP_REASON } from '../helpers.js'

/** Where an integration under test connects: the database URL, the store's pool, the business table. */
export interface OrmContext {
  readonly url: string
  readonly pool: Pool
  readonly table: string
}

/** One ORM, as the shared cases drive it. */
export interface OrmIntegration {
  /**
   * Runs `fn` in one ORM transaction; `insert` writes a business row through the ORM, `tx` is
   * the txbox handle of that transaction (the integration under test).
   */
  transaction<T>(
    fn: (orm: { insert(id: string): Promise<void>; tx: MySqlTransaction }) => Promise<T>,
  ): Promise<T>
  /** The handle of an ORM transaction that has committed. */
  ended(): Promise<MySqlTransaction>
  /** Things that are not this ORM's transaction, each refused by the integration function. */
  readonly wrongInputs: readonly (readonly [what: string, call: () => unknown])[]
  close(): Promise<void>
}

const event = (eventId: string) => ({ eventId, subject: 'orders.created', payload: '{"n":1}' })

/**
 * The cases every ORM integration passes against the real server: a business write through
 * the ORM and an enqueue through txbox in one ORM transaction commit together and roll back
 * together; the inbox's side effect happens once under redelivery; an ended transaction, a
 * wrong object and another database are refused before any write.
 */
export const describeOrmIntegration = (
  name: string,
  connect: (context: OrmContext) => Promise<OrmIntegration>,
) =>
  describe.skipIf(SKIP)(`${name} integration${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`, () => {
    let pool: Pool
    let store: MySqlStore
    let drop: () => Promise<void>
    let orders: Awaited<ReturnType<typeof ordersTable>>
    let orm: OrmIntegration

    beforeAll(async () => {
      pool = makePool({ connectionLimit: 6 })
      ;({ store, drop } = await freshStore(pool))
      orders = await ordersTable(pool, store.tablePrefix)
      orm = await connect({ url: MYSQL_URL as string, pool, table: orders.table })
    })
    afterAll(async () => {
      await orm?.close()
      await orders?.drop()
      await drop?.()
      await pool?.end()
    })
    afterEach(() => {
      const { all, idle } = poolCounts(pool)
      expect(idle).toBe(all)
    })

    it('commits the business write and the enqueue together', async () => {
      const created = await orm.transaction(async ({ insert, tx }) => {
        await insert('o-commit')
        const inside = await store.outbox.findOrCreate(
          {
            ...event('e-commit'),
            headers: '{"h":"ü 😀"}',
            availableAt: new Date(Date.UTC(2030, 0, 2, 3, 4, 5, 678)),
          },
          { tx },
        )
        await store.outbox.findOrCreateMany([event('e-commit-2')], { tx })
        // Not visible outside the ORM's transaction before it commits.
        expect(await store.outbox.get('e-commit')).toBeNull()
        return inside
      })
      // What the enqueue answered through the ORM's connection is what was stored.
      expect(created).toEqual(await store.outbox.get('e-commit'))
      expect(created.availableAt.toISOString()).toBe('2030-01-02T03:04:05.678Z')
      expect(await orders.ids()).toContain('o-commit')
      expect(await store.outbox.get('e-commit')).toMatchObject({ status: 'pending', payload: '{"n":1}' })
      expect((await store.outbox.get('e-commit-2'))?.status).toBe('pending')
    })

    it('rolls the business write and the enqueue back together', async () => {
      const failure = new Error('roll back')
      const error = await orm
        .transaction(async ({ insert, tx }) => {
          await insert('o-rollback')
          await store.outbox.findOrCreate(event('e-rollback'), { tx })
          throw failure
        })
        .catch((caught: unknown) => caught)
      expect(error).toBe(failure)
      expect(await orders.ids()).not.toContain('o-rollback')
      expect(await store.outbox.get('e-rollback')).toBeNull()
    })

    it('inbox: the side effect and the processed mark commit together, so redeliveries run it exactly once', async () => {
      const delivery = { eventId: 'in-once', subject: 'orders.created', payload: '{}' }
      const claim = (workerId: string) => store.inbox.claim(delivery, { leaseMs: 60_000, workerId })
      const handle = (fail: boolean) =>
        orm.transaction(async ({ insert, tx }) => {
          await insert('side-effect-in-once')
          await store.inbox.markAsProcessed(delivery.eventId, { tx })
          if (fail) throw new Error('handler failed after its side effect')
        })
      // First delivery: the handler fails after its write; both roll back, the event is failed.
      expect((await claim('w1')).shouldProcess).toBe(true)
      await expect(handle(true)).rejects.toThrow('handler failed after its side effect')
      await store.inbox.markAsFailed(delivery.eventId, 'handler failed')
      expect(await orders.ids()).not.toContain('side-effect-in-once')
      // Redelivery: processed once; the next redelivery is a duplicate and runs nothing.
      expect((await claim('w2')).shouldProcess).toBe(true)
      await handle(false)
      expect((await claim('w3')).shouldProcess).toBe(false)
      expect((await orders.ids()).filter((id) => id === 'side-effect-in-once')).toHaveLength(1)
      expect((await store.inbox.get(delivery.eventId))?.status).toBe('processed')
    })

    it('refuses the handle of a transaction that has ended, before any write', async () => {
      const tx = await orm.ended()
      const error = await store.outbox
        .findOrCreate(event('e-ended'), { tx })
        .catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(ValidationError)
      expect(String((error as Error).message)).toMatch(
        /^\[txbox\] \[mysql\] tx \(.+\) .*(ended|committed|not inside a transaction)/,
      )
      expect(await store.outbox.get('e-ended')).toBeNull()
      await expect(store.inbox.markAsProcessed('in-once', { tx })).rejects.toBeInstanceOf(ValidationError)
    })

    it('refuses what is not its transaction, naming it', async () => {
      for (const [what, call] of orm.wrongInputs) {
        let error: unknown
        try {
          call()
        } catch (caught) {
          error = caught
        }
        expect(error, what).toBeInstanceOf(ValidationError)
        expect((error as Error).message, what).toMatch(/^\[txbox\] \[mysql\] /)
      }
    })

    it("refuses a transaction on another database than the store's, before any write", async () => {
      const database = `txbox_other_${randomBytes(4).toString('hex')}`
      await pool.query(`CREATE DATABASE \`${database}\``)
      const otherUrl = new URL(MYSQL_URL as string)
      otherUrl.pathname = `/${database}`
      const otherPool = makePool({ uri: otherUrl.toString(), connectionLimit: 3 })
      // The other database has the same txbox tables: without the check the event would land there.
      const other = createMySqlStore({ pool: otherPool, tablePrefix: store.tablePrefix })
      await other.migrate()
      const otherOrders = await ordersTable(otherPool, store.tablePrefix)
      const otherOrm = await connect({ url: otherUrl.toString(), pool: otherPool, table: otherOrders.table })
      try {
        const error = await otherOrm
          .transaction(({ tx }) => store.outbox.findOrCreate(event('e-elsewhere'), { tx }))
          .catch((caught: unknown) => caught)
        expect(error).toBeInstanceOf(ValidationError)
        expect((error as Error).message).toMatch(/another|not one of the store's pool|is connected to/)
        expect(await store.outbox.get('e-elsewhere')).toBeNull()
        expect(await other.outbox.get('e-elsewhere')).toBeNull()
      } finally {
        await otherOrm.close()
        await otherPool.end()
        await pool.query(`DROP DATABASE \`${database}\``)
      }
    })
  })
