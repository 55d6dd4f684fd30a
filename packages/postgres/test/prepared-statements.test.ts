import { ValidationError } from '@txbox/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPostgresStore } from '../src/index.js'
import { createNamespace, event, type Namespace, newPool, noServer, skipReason } from './helpers.js'

/** The names prepared on the one connection of a pool of one. */
const preparedOn = async (ns: Namespace, pool = ns.pool): Promise<string[]> =>
  (await pool.query<{ name: string }>('SELECT name FROM pg_prepared_statements ORDER BY name')).rows.map(
    (row) => row.name,
  )

describe('the preparedStatements option', () => {
  it('must be a boolean', async () => {
    const pool = newPool(1)
    expect(() => createPostgresStore({ pool, preparedStatements: 'yes' as unknown as boolean })).toThrow(
      ValidationError,
    )
    await pool.end()
  })
})

describe.skipIf(noServer)(`prepared statements${noServer ? ` (skipped: ${skipReason})` : ''}`, () => {
  let ns: Namespace

  beforeAll(async () => {
    // One connection: what it has prepared is what the store sent on it.
    ns = await createNamespace({ max: 1 })
  })
  afterAll(async () => {
    await ns?.dispose()
  })

  it('by default, each statement is prepared once per connection under a name derived from its text', async () => {
    await ns.store.outbox.findOrCreate(event('p-1'))
    const once = (await preparedOn(ns)).filter((name) => name.startsWith('txbox_'))
    expect(once).toHaveLength(1)
    await ns.store.outbox.findOrCreate(event('p-2'))
    expect((await preparedOn(ns)).filter((name) => name.startsWith('txbox_'))).toEqual(once)
    // A duplicate inserts nothing, then reads the stored row: one more statement, prepared once.
    await ns.store.outbox.findOrCreate(event('p-2'))
    const withRead = (await preparedOn(ns)).filter((name) => name.startsWith('txbox_'))
    expect(withRead).toHaveLength(2)
    await ns.store.outbox.findOrCreate(event('p-1'))
    expect((await preparedOn(ns)).filter((name) => name.startsWith('txbox_'))).toEqual(withRead)
    await ns.store.outbox.claim({ leaseMs: 1_000, workerId: 'w' })
    await ns.store.outbox.markManyAsSent(['p-1', 'p-2'], { workerId: 'w' })
    // The claim is one simple-protocol query (no parameters, nothing to prepare); the mark is prepared.
    expect((await preparedOn(ns)).filter((name) => name.startsWith('txbox_'))).toHaveLength(3)
    expect((await ns.store.outbox.getCountByStatus()).sent).toBe(2)
  })

  it('two stores on one pool with different prefixes never share a name', async () => {
    const other = createPostgresStore({
      pool: ns.pool,
      schema: ns.schema,
      tablePrefix: 'other_',
      clock: ns.clock.now,
    })
    await other.migrate()
    const before = new Set(await preparedOn(ns))
    await other.outbox.findOrCreate(event('o-1'))
    const added = (await preparedOn(ns)).filter((name) => !before.has(name))
    expect(added).toHaveLength(1)
    expect(await other.outbox.get('o-1')).not.toBeNull()
    expect(await ns.store.outbox.get('o-1')).toBeNull()
  })

  it('with preparedStatements: false, nothing is prepared (for PgBouncer in transaction mode)', async () => {
    const pool = newPool(1)
    try {
      const store = createPostgresStore({
        pool,
        schema: ns.schema,
        clock: ns.clock.now,
        preparedStatements: false,
      })
      await store.outbox.findOrCreate(event('u-1'))
      await store.inbox.findOrCreate(event('u-2'))
      expect(await preparedOn(ns, pool)).toEqual([])
      expect(await store.outbox.get('u-1')).not.toBeNull()
    } finally {
      await pool.end()
    }
  })
})
