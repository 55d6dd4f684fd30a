import { readdirSync } from 'node:fs'
import { renderMigration, StorageError } from '@txbox/core'
import Database from 'better-sqlite3'
import { afterAll, describe, expect, it } from 'vitest'
import { createSqliteStore } from '../src/index.js'
import { sqliteMigrations } from '../src/migrate.js'
import { event, LEASE, openStore, tempDirectory } from './helpers.js'

const temp = tempDirectory()
afterAll(() => temp.cleanup())

/** The DDL of one shipped file for a prefix. */
const rendered = (version: number, prefix = 'txbox_'): string => {
  const migration = sqliteMigrations().find((step) => step.version === version)
  if (migration === undefined) throw new Error(`no migration ${version}`)
  return renderMigration(migration.body, { prefix })
}

/** The history table exactly as release 0.1.0 of this package created it (`sql.ts` then). */
const RELEASE_0_1_0_HISTORY = `CREATE TABLE IF NOT EXISTS txbox_schema_version (
  version INTEGER PRIMARY KEY,
  applied_at INTEGER NOT NULL
) STRICT`

const names = (db: Database.Database, type: 'table' | 'index'): string[] =>
  db.prepare('SELECT name FROM sqlite_master WHERE type = ? ORDER BY name').pluck().all(type) as string[]

describe('the migration files', () => {
  it('are every file of migrations/, numbered 1..n, each naming only the prefix it is given', () => {
    const files = readdirSync(new URL('../migrations/', import.meta.url)).sort()
    expect(files).toEqual([
      '0001_init.down.sql',
      '0001_init.sql',
      '0002_inbox_id_only.down.sql',
      '0002_inbox_id_only.sql',
      '0003_ordering_keys.down.sql',
      '0003_ordering_keys.sql',
      '0004_key_heads.down.sql',
      '0004_key_heads.sql',
      '0005_redrive_behind_publishing.down.sql',
      '0005_redrive_behind_publishing.sql',
    ])
    expect(sqliteMigrations().map(({ version, name }) => [version, name])).toEqual([
      [1, 'init'],
      [2, 'inbox_id_only'],
      [3, 'ordering_keys'],
      [4, 'key_heads'],
      [5, 'redrive_behind_publishing'],
    ])
    for (const { body, down } of sqliteMigrations()) {
      for (const text of [body, down ?? '']) {
        const ddl = renderMigration(text, { prefix: 'other_' })
        expect(ddl).not.toContain('{{')
        const statements = ddl
          .split('\n')
          .filter((line) => !line.startsWith('--'))
          .join('\n')
        expect(statements).toContain('other_')
        expect(statements).not.toMatch(/txbox_/)
      }
    }
  })

  it('apply as a user of another migration tool would: the store then works on them', async () => {
    const db = new Database(':memory:')
    for (const { version } of sqliteMigrations()) db.exec(rendered(version, 'mine_'))
    const store = createSqliteStore({ db, tablePrefix: 'mine_' })
    await store.outbox.findOrCreate(event('by-hand'))
    expect((await store.outbox.claim({ workerId: 'w', ...LEASE })).map((e) => e.eventId)).toEqual(['by-hand'])
    db.close()
  })
})

describe('migrate', () => {
  it('recognises a database migrated by release 0.1.0: nothing is re-applied, rows and history stay', async () => {
    const db = new Database(temp.file('release-0.1.0.db'))
    // As the previous release left it: both versions applied and recorded, one event stored.
    db.exec(RELEASE_0_1_0_HISTORY)
    db.exec(rendered(1))
    db.exec(rendered(2))
    db.prepare('INSERT INTO txbox_schema_version (version, applied_at) VALUES (?, ?)').run(1, 1_000)
    db.prepare('INSERT INTO txbox_schema_version (version, applied_at) VALUES (?, ?)').run(2, 2_000)
    const before = createSqliteStore({ db })
    await before.outbox.findOrCreate(event('kept'))
    // Markers a re-run would undo: 0001 re-creates the status index, 0002 drops this one.
    db.exec('DROP INDEX txbox_outbox_status')
    db.exec('CREATE INDEX txbox_inbox_stream_seq ON txbox_inbox (stream)')
    const indexes = names(db, 'index')

    await createSqliteStore({ db, clock: () => new Date(3_000) }).migrate()

    // Only versions 3 to 5, which release 0.1.0 did not have, are applied: 4 replaces the
    // claimable index by the heads' and adds the chain's (3's key_holds goes again); 5 only
    // replaces a trigger.
    expect(names(db, 'index')).toEqual(
      [
        ...indexes.filter((name) => name !== 'txbox_outbox_claimable'),
        'txbox_outbox_claimable_heads',
        'txbox_outbox_key_failed',
        'txbox_outbox_key_next',
      ].sort(),
    )
    expect(
      db.prepare('SELECT version, applied_at FROM txbox_schema_version ORDER BY version').raw().all(),
    ).toEqual([
      [1, 1_000],
      [2, 2_000],
      [3, 3_000],
      [4, 3_000],
      [5, 3_000],
    ])
    expect((await before.outbox.get('kept'))?.status).toBe('pending')
    db.close()
  })

  it('upgrades a version 1 database: a new id at a stored (stream, streamSeq) is a new event', async () => {
    const db = new Database(temp.file('upgrade-from-1.db'))
    // Version 1 alone, with its unique (stream, stream_seq), as release 0.1.0's first migrate left it.
    db.exec(RELEASE_0_1_0_HISTORY)
    db.exec(rendered(1))
    db.prepare('INSERT INTO txbox_schema_version (version, applied_at) VALUES (?, ?)').run(1, 1_000)
    const store = createSqliteStore({ db })
    const old = { eventId: 'old-7', subject: 'orders.created', payload: '{}', stream: 'ORDERS', streamSeq: 7 }
    expect((await store.inbox.claim(old, { leaseMs: 30_000, workerId: 'w' })).shouldProcess).toBe(true)
    await store.inbox.markAsProcessed('old-7')
    const reused = { ...old, eventId: 'new-7' }
    await expect(store.inbox.claim(reused, { leaseMs: 30_000, workerId: 'w' })).rejects.toThrow(StorageError)

    await store.migrate()
    const claimed = await store.inbox.claim(reused, { leaseMs: 30_000, workerId: 'w' })
    expect(claimed.shouldProcess).toBe(true)
    expect(claimed.event).toMatchObject({ eventId: 'new-7', stream: 'ORDERS', streamSeq: 7, deliveries: 1 })
    expect((await store.inbox.get('old-7'))?.status).toBe('processed')
    expect(db.prepare('SELECT version FROM txbox_schema_version ORDER BY version').pluck().all()).toEqual([
      1, 2, 3, 4, 5,
    ])
    expect(names(db, 'index')).not.toContain('txbox_inbox_stream_seq')
    db.close()
  })

  it('upgrades a version 2 database in place: stored events stay unkeyed, the next enqueues take keys', async () => {
    const db = new Database(temp.file('upgrade-from-2.db'))
    db.exec(RELEASE_0_1_0_HISTORY)
    db.exec(rendered(1))
    db.exec(rendered(2))
    db.prepare('INSERT INTO txbox_schema_version (version, applied_at) VALUES (?, ?)').run(1, 1_000)
    db.prepare('INSERT INTO txbox_schema_version (version, applied_at) VALUES (?, ?)').run(2, 2_000)
    db.prepare(
      `INSERT INTO txbox_outbox (event_id, subject, payload, status, enqueued_at, retry_count, available_at)
       VALUES ('old', 'orders.created', '{}', 'pending', 0, 0, 0)`,
    ).run()
    const store = createSqliteStore({ db })
    await expect(
      store.outbox.findOrCreate({ ...event('too-early'), orderingKey: 'order-1' }),
    ).rejects.toThrow(StorageError)

    await store.migrate()
    const old = await store.outbox.get('old')
    expect(old).toMatchObject({ eventId: 'old', status: 'pending' })
    expect(old).not.toHaveProperty('orderingKey')
    expect(old).not.toHaveProperty('keySeq')
    const keyed = await store.outbox.findOrCreate({ ...event('new'), orderingKey: 'order-1' })
    expect(keyed).toMatchObject({ orderingKey: 'order-1', keySeq: 2 })
    expect(await store.outbox.get('new')).toMatchObject({ orderingKey: 'order-1', keySeq: 2 })
    db.close()
  })

  it('upgrades a version 3 database with keyed events in flight: each key goes on from its head, above every keySeq given', async () => {
    const db = new Database(temp.file('upgrade-from-3.db'))
    db.exec(RELEASE_0_1_0_HISTORY)
    for (const version of [1, 2, 3]) {
      db.exec(rendered(version))
      db.prepare('INSERT INTO txbox_schema_version (version, applied_at) VALUES (?, ?)').run(version, 1_000)
    }
    // As version 3 left them: key A with a sent head, one in flight and two waiting; key B's
    // counter at 500 with every event cleaned up (its seqs were far below); C failed then waiting.
    const insert = db.prepare(
      `INSERT INTO txbox_outbox (event_id, subject, payload, status, enqueued_at, retry_count, available_at,
         ordering_key, key_seq, claimed_by, lease_until)
       VALUES (?, 's', '{}', ?, 0, 0, 0, ?, ?, ?, ?)`,
    )
    insert.run('a1', 'sent', 'A', 1, null, null)
    insert.run('a2', 'publishing', 'A', 2, 'w', 10 ** 15)
    insert.run('u1', 'pending', null, null, null, null)
    insert.run('a3', 'pending', 'A', 3, null, null)
    insert.run('c1', 'failed', 'C', 1, null, null)
    insert.run('a4', 'pending', 'A', 4, null, null)
    insert.run('c2', 'pending', 'C', 2, null, null)
    db.exec("INSERT INTO txbox_outbox_keys VALUES ('A', 4), ('B', 500), ('C', 2)")
    const store = createSqliteStore({ db })
    await store.migrate()

    const chain = db
      .prepare('SELECT event_id, key_prev FROM txbox_outbox WHERE key_prev IS NOT NULL ORDER BY seq')
      .raw()
      .all()
    expect(chain).toEqual([
      ['a3', 2],
      ['a4', 4],
    ])
    expect(db.prepare('SELECT ordering_key, tail_seq FROM txbox_outbox_keys ORDER BY 1').raw().all()).toEqual(
      [
        ['A', 6],
        ['B', null],
        ['C', 7],
      ],
    )
    // a2 is in flight, c1 a dead letter: only u1 is claimable, and c2 under 'skip'.
    expect((await store.outbox.claim({ workerId: 'w', ...LEASE })).map((e) => e.eventId)).toEqual(['u1'])
    const skip = await store.outbox.claim({ workerId: 'w', ...LEASE, keyedDeadLetters: 'skip' })
    expect(skip.map((e) => e.eventId)).toEqual(['c2'])
    await store.outbox.markAsSent('a2')
    expect((await store.outbox.claim({ workerId: 'w', ...LEASE })).map((e) => e.eventId)).toEqual(['a3'])
    // New events go on above every key_seq version 3 gave, B's 500 too.
    const [b, a5] = await store.outbox.findOrCreateMany([
      { ...event('b501'), orderingKey: 'B' },
      { ...event('a5'), orderingKey: 'A' },
    ])
    expect(b?.keySeq).toBe(501)
    expect(a5?.keySeq).toBe(502)
    expect(
      db.prepare("SELECT last_key_seq FROM txbox_outbox_keys WHERE ordering_key = 'B'").pluck().get(),
    ).toBe(501)
    db.close()
  })

  it("version 5's down script puts a chain that a redrive left out of seq order back in it, as version 4's walk needs", async () => {
    const db = new Database(':memory:')
    const store = createSqliteStore({ db })
    await store.migrate()
    const skip = { workerId: 'w', ...LEASE, keyedDeadLetters: 'skip' } as const
    await store.outbox.findOrCreateMany(['r1', 'r2', 'r3'].map((id) => ({ ...event(id), orderingKey: 'R' })))
    await store.outbox.claim(skip)
    await store.outbox.markAsFailed('r1', 'dead letter', { workerId: 'w' })
    await store.outbox.claim(skip)
    await store.outbox.requeueFailed(['r1'])
    const chain = () =>
      db
        .prepare("SELECT event_id, key_prev FROM txbox_outbox WHERE status <> 'sent' ORDER BY seq")
        .raw()
        .all()
    const tail = () =>
      db.prepare("SELECT tail_seq FROM txbox_outbox_keys WHERE ordering_key = 'R'").pluck().get()
    // Version 5: r1 waits behind r2, which is publishing.
    expect(chain()).toEqual([
      ['r1', 2],
      ['r2', null],
      ['r3', 1],
    ])
    expect(tail()).toBe(3)
    const down = sqliteMigrations().find((step) => step.version === 5)?.down
    db.exec(renderMigration(down ?? '', { prefix: 'txbox_' }))
    expect(chain()).toEqual([
      ['r1', null],
      ['r2', 1],
      ['r3', 2],
    ])
    expect(tail()).toBe(3)
    db.close()
  })

  it('is idempotent, records every version at the clock time, and turns WAL on for a file', async () => {
    const { db, store } = await openStore(temp.file('migrate-twice.db'), { clock: () => new Date(42_000) })
    await store.migrate()
    await store.migrate()
    expect(db.prepare('SELECT version, applied_at FROM txbox_schema_version').raw().all()).toEqual(
      sqliteMigrations().map(({ version }) => [version, 42_000]),
    )
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal')
    db.close()
  })

  it('succeeds from two connections to one file, and leaves one schema', async () => {
    const file = temp.file('migrate-two.db')
    const a = new Database(file)
    const b = new Database(file)
    const stores = [createSqliteStore({ db: a }), createSqliteStore({ db: b })]
    await Promise.all(stores.map((store) => store.migrate()))
    await Promise.all(stores.map((store) => store.migrate()))
    expect(a.prepare('SELECT COUNT(*) FROM txbox_schema_version').pluck().get()).toBe(
      sqliteMigrations().length,
    )
    await stores[0]?.outbox.findOrCreate(event('from-a'))
    expect((await stores[1]?.outbox.get('from-a'))?.eventId).toBe('from-a')
    a.close()
    b.close()
  })

  it('runs concurrent migrations of one connection one after the other, not as a nested BEGIN', async () => {
    const db = new Database(':memory:')
    const stores = [
      createSqliteStore({ db }),
      createSqliteStore({ db }),
      createSqliteStore({ db, tablePrefix: 'other_' }),
    ]
    await Promise.all(stores.map((store) => store.migrate()))
    expect(db.inTransaction).toBe(false)
    expect(names(db, 'table')).toEqual(
      expect.arrayContaining([
        'txbox_outbox',
        'txbox_schema_version',
        'other_outbox',
        'other_schema_version',
      ]),
    )
    expect(db.prepare('SELECT COUNT(*) FROM txbox_schema_version').pluck().get()).toBe(
      sqliteMigrations().length,
    )
    db.close()
  })

  it('joins a transaction the caller has open, and rolls back with it', async () => {
    const db = new Database(':memory:')
    db.exec('BEGIN')
    await createSqliteStore({ db }).migrate()
    expect(db.inTransaction).toBe(true)
    db.exec('ROLLBACK')
    expect(names(db, 'table')).not.toContain('txbox_outbox')
    db.close()
  })

  it('fails as a StorageError and leaves nothing half-applied', async () => {
    const db = new Database(':memory:')
    // A table under the inbox's name that is not the inbox: 0001 creates the outbox first, then
    // fails on an index of a column this table lacks; the whole step rolls back.
    db.exec('CREATE TABLE txbox_inbox (x INTEGER)')
    const error = await createSqliteStore({ db })
      .migrate()
      .catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(StorageError)
    expect((error as StorageError).message).toMatch(/^\[txbox\] \[sqlite\] migrate failed: SQLITE_ERROR/)
    expect(names(db, 'table')).toEqual(['txbox_inbox'])
    expect(db.inTransaction).toBe(false)
    db.close()
  })
})
