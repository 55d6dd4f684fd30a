import { ValidationError } from '@txbox/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { PostgresTransaction } from '../../src/index.js'
import { createNamespace, event, type Namespace, noServer, skipReason, url } from '../helpers.js'

/** An ORM or driver under test: its transaction, its business write, and txbox's handle of it. */
export interface OrmUnderTest<Raw> {
  /** Runs `fn` in one transaction of the ORM: committed when `fn` resolves, rolled back when it throws. */
  transaction<T>(fn: (raw: Raw) => Promise<T>): Promise<T>
  /** The business write, through the ORM, inside `raw`'s transaction. */
  insertOrder(raw: Raw, schema: string, id: string): Promise<void>
  /** The integration under test: txbox's `{ tx }` for `raw`. */
  handle(raw: Raw): PostgresTransaction
  /** Calls the integration on the ORM's object that is not a transaction (it must refuse). */
  handleOfRoot(): PostgresTransaction
  close(): Promise<void>
}

/** A database on the same server that is not the store's (it exists on every server). */
export const otherDatabaseUrl = (): string => {
  const other = new URL(url ?? 'postgres://localhost/txbox')
  other.pathname = '/postgres'
  return other.toString()
}

/**
 * The cases every integration passes against the real server: commit together, roll back
 * together, the inbox's exactly-once side effect under redelivery, and the handles it must
 * refuse before any write.
 */
export const describeOrmIntegration = <Raw>(
  name: string,
  open: (databaseUrl: string) => Promise<OrmUnderTest<Raw>> | OrmUnderTest<Raw>,
): void => {
  describe.skipIf(noServer)(`${name}${noServer ? ` (skipped: ${skipReason})` : ''}`, () => {
    let ns: Namespace
    let orm: OrmUnderTest<Raw>
    const orders = () => `"${ns.schema}".orders`
    const ordersWithId = async (id: string) =>
      (await ns.pool.query(`SELECT 1 FROM ${orders()} WHERE id = $1`, [id])).rowCount

    beforeAll(async () => {
      ns = await createNamespace()
      await ns.pool.query(`CREATE TABLE ${orders()} (id text PRIMARY KEY)`)
      orm = await open(url as string)
    })
    afterAll(async () => {
      await orm?.close()
      await ns?.dispose()
    })

    it('a business write and an enqueue commit together', async () => {
      const { outbox } = ns.store
      const stored = await orm.transaction(async (raw) => {
        await orm.insertOrder(raw, ns.schema, 'commit-1')
        const created = await outbox.findOrCreate(event('commit-1'), { tx: orm.handle(raw) })
        const batch = await outbox.findOrCreateMany([event('commit-2'), event('commit-3')], {
          tx: orm.handle(raw),
        })
        // Not visible outside the transaction before it commits.
        expect(await outbox.get('commit-1')).toBeNull()
        expect(await ordersWithId('commit-1')).toBe(0)
        return [created, ...batch]
      })
      expect(stored.map((e) => [e.eventId, e.status])).toEqual([
        ['commit-1', 'pending'],
        ['commit-2', 'pending'],
        ['commit-3', 'pending'],
      ])
      expect(await ordersWithId('commit-1')).toBe(1)
      // What the store answered through the ORM's connection is the event as stored (times,
      // counters and text read back through that driver's own type handling).
      for (const answered of stored) expect(answered).toEqual(await outbox.get(answered.eventId))
      expect(await outbox.get('commit-1')).toMatchObject({
        status: 'pending',
        payload: event('commit-1').payload,
      })
      expect((await outbox.get('commit-3'))?.status).toBe('pending')
    })

    it("keyed enqueues in the ORM's transaction: keySeqs answered through its driver, in commit order", async () => {
      const { outbox } = ns.store
      const stored = await orm.transaction(async (raw) => {
        await orm.insertOrder(raw, ns.schema, 'keyed-1')
        const first = await outbox.findOrCreate(event('keyed-1', { orderingKey: 'orm-key' }), {
          tx: orm.handle(raw),
        })
        const batch = await outbox.findOrCreateMany(
          [
            event('keyed-2', { orderingKey: 'orm-key' }),
            event('keyed-3'),
            event('keyed-4', { orderingKey: 'orm-key' }),
          ],
          { tx: orm.handle(raw) },
        )
        return [first, ...batch]
      })
      expect(stored.map((e) => [e.eventId, e.orderingKey, e.keySeq])).toEqual([
        ['keyed-1', 'orm-key', 1],
        ['keyed-2', 'orm-key', 2],
        ['keyed-3', undefined, undefined],
        ['keyed-4', 'orm-key', 3],
      ])
      for (const answered of stored) expect(answered).toEqual(await outbox.get(answered.eventId))
      // A rolled-back keyed enqueue leaves no event; the key's next one follows the last committed.
      await expect(
        orm.transaction(async (raw) => {
          await outbox.findOrCreate(event('keyed-5', { orderingKey: 'orm-key' }), { tx: orm.handle(raw) })
          throw new Error('business rule failed')
        }),
      ).rejects.toThrow('business rule failed')
      expect(await outbox.get('keyed-5')).toBeNull()
      expect((await outbox.findOrCreate(event('keyed-6', { orderingKey: 'orm-key' }))).keySeq).toBe(4)
    })

    it('a business write and an enqueue roll back together', async () => {
      const { outbox } = ns.store
      await expect(
        orm.transaction(async (raw) => {
          await orm.insertOrder(raw, ns.schema, 'rollback-1')
          await outbox.findOrCreate(event('rollback-1'), { tx: orm.handle(raw) })
          throw new Error('business rule failed')
        }),
      ).rejects.toThrow('business rule failed')
      expect(await ordersWithId('rollback-1')).toBe(0)
      expect(await outbox.get('rollback-1')).toBeNull()
    })

    it("the inbox: a redelivered event's side effect happens exactly once", async () => {
      const { inbox } = ns.store
      const leaseMs = 30_000
      const delivery = event('inbox-1')
      const deliver = async (workerId: string, crash: boolean): Promise<boolean> => {
        const claimed = await inbox.claim(delivery, { leaseMs, workerId })
        if (!claimed.shouldProcess) return false
        await orm.transaction(async (raw) => {
          await orm.insertOrder(raw, ns.schema, `side-effect-of-${delivery.eventId}`)
          await inbox.markAsProcessed(delivery.eventId, { tx: orm.handle(raw) })
          if (crash) throw new Error('handler crashed after its write')
        })
        return true
      }
      await expect(deliver('w1', true)).rejects.toThrow('handler crashed')
      expect(await inbox.isProcessed('inbox-1')).toBe(false)
      ns.clock.advance(leaseMs + 1)
      expect(await deliver('w2', false)).toBe(true)
      expect(await deliver('w3', false)).toBe(false)
      ns.clock.advance(leaseMs + 1)
      expect(await deliver('w1', false)).toBe(false)
      expect(await ordersWithId('side-effect-of-inbox-1')).toBe(1)
      expect(await inbox.isProcessed('inbox-1')).toBe(true)
    })

    it('refuses the handle of a transaction that has ended, before any write', async () => {
      const { outbox } = ns.store
      // Used once inside, so any per-transaction memo the store keeps is warm when it ends.
      const ended = await orm.transaction(async (raw) => {
        await outbox.findOrCreate(event('ended-0'), { tx: orm.handle(raw) })
        return raw
      })
      expect((await outbox.get('ended-0'))?.status).toBe('pending')
      await expect(
        (async () => outbox.findOrCreate(event('ended-1'), { tx: orm.handle(ended) }))(),
      ).rejects.toThrow(ValidationError)
      await expect(
        (async () => ns.store.inbox.markAsProcessed('ended-1', { tx: orm.handle(ended) }))(),
      ).rejects.toThrow(/committed or rolled back|not inside a transaction/)
      expect(await outbox.get('ended-1')).toBeNull()
    })

    it('refuses the ORM object that is not a transaction, naming what to pass', async () => {
      const attempt = async () => ns.store.outbox.findOrCreate(event('root-1'), { tx: orm.handleOfRoot() })
      await expect(attempt()).rejects.toThrow(ValidationError)
      await expect(attempt()).rejects.toThrow(
        /^\[txbox\] \[postgres\] .*(not a transaction|not inside a transaction)/,
      )
      expect(await ns.store.outbox.get('root-1')).toBeNull()
    })

    it("refuses a transaction on another database than the store's, before any write", async () => {
      const other = await open(otherDatabaseUrl())
      try {
        const attempt = other.transaction(async (raw) =>
          ns.store.outbox.findOrCreate(event('other-db-1'), { tx: other.handle(raw) }),
        )
        await expect(attempt).rejects.toThrow(ValidationError)
        const storeDatabase = new URL(url as string).pathname.slice(1)
        await expect(attempt).rejects.toThrow(
          new RegExp(
            `is connected to database "postgres" .* store's pool is connected to database "${storeDatabase}"`,
          ),
        )
      } finally {
        await other.close()
      }
      expect(await ns.store.outbox.get('other-db-1')).toBeNull()
    })
  })
}
