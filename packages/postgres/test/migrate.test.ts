import { readFileSync } from 'node:fs'
import { StorageError } from '@txbox/core'
import { afterAll, describe, expect, it } from 'vitest'
import { createPostgresStore } from '../src/index.js'
import {
  migrationSql,
  migrationsDirectory,
  postgresMigrations,
  renderPostgresMigration,
} from '../src/migrate.js'
import { freshSchema, newPool, noServer, skipReason } from './helpers.js'

describe('migration files', () => {
  it('are numbered, and every placeholder is one of {{schema}} / {{prefix}}', () => {
    const migrations = postgresMigrations()
    expect(migrations.map((m) => m.version)).toEqual(migrations.map((_, i) => i + 1))
    for (const migration of migrations) {
      const placeholders = new Set(migration.body.match(/\{\{[^}]*\}\}/g))
      expect([...placeholders].sort()).toEqual(['{{prefix}}', '{{schema}}'])
      const rendered = renderPostgresMigration(migration, 'app', 'ob_')
      expect(rendered).not.toMatch(/\{\{/)
      expect(rendered).toMatch(/"app"\."ob_(outbox|inbox|wakeup)"/)
    }
    expect(migrations.map((m) => m.name)).toEqual([
      'initial',
      'inbox_id_only',
      'wakeup',
      'ordering',
      'unkeyed_claimable',
    ])
    expect(readFileSync(new URL('0001_initial.sql', migrationsDirectory), 'utf8')).toBe(migrations[0]?.body)
  })
})

describe.skipIf(noServer)(`migrate()${noServer ? ` (skipped: ${skipReason})` : ''}`, () => {
  const pools = [newPool(2), newPool(2)]
  const schemas: string[] = []

  afterAll(async () => {
    for (const schema of schemas) await pools[0]?.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await Promise.all(pools.map((pool) => pool.end()))
  })

  const versions = async (schema: string, prefix = 'txbox_') => {
    const result = await pools[0]!.query<{ version: number }>(
      `SELECT version FROM "${schema}"."${prefix}schema_version" ORDER BY version`,
    )
    return result.rows.map((row) => row.version)
  }

  it('creates the schema, then a second run is a no-op', async () => {
    const schema = freshSchema()
    schemas.push(schema)
    const store = createPostgresStore({ pool: pools[0]!, schema })
    await store.migrate()
    await store.migrate()
    expect(await versions(schema)).toEqual(postgresMigrations().map((m) => m.version))
    const tables = await pools[0]!.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`,
      [schema],
    )
    expect(tables.rows.map((row) => row.table_name)).toEqual([
      'txbox_inbox',
      'txbox_outbox',
      'txbox_outbox_keys',
      'txbox_schema_version',
      'txbox_wakeup',
    ])
  })

  it('succeeds from two pools at once, on a new schema and on two prefixes in it', async () => {
    const schema = freshSchema()
    schemas.push(schema)
    const runs = pools.flatMap((pool) =>
      ['txbox_', 'other_'].map((tablePrefix) => createPostgresStore({ pool, schema, tablePrefix }).migrate()),
    )
    await Promise.all(runs)
    expect(await versions(schema)).toEqual(postgresMigrations().map((m) => m.version))
    expect(await versions(schema, 'other_')).toEqual(postgresMigrations().map((m) => m.version))
  })

  it('ships exactly the DDL it runs: applying the rendered files by hand gives the same tables', async () => {
    const schema = freshSchema()
    schemas.push(schema)
    await pools[0]!.query(`CREATE SCHEMA "${schema}"`)
    for (const migration of postgresMigrations()) {
      await pools[0]!.query(renderPostgresMigration(migration, schema, 'manual_'))
    }
    const store = createPostgresStore({ pool: pools[0]!, schema, tablePrefix: 'manual_' })
    // migrate() over hand-applied DDL only records the versions (IF NOT EXISTS everywhere).
    await store.migrate()
    await store.outbox.findOrCreate({ eventId: 'a', subject: 's', payload: 'p' })
    expect((await store.outbox.get('a'))?.status).toBe('pending')
  })

  it('reads the history a previous release wrote (files 001_/002_): only the newer version is applied', async () => {
    const schema = freshSchema()
    schemas.push(schema)
    const pool = pools[0]!
    // What 0.1.0's migrate() left: its history table, written here in that release's own
    // words (not through migrationSql, so a change there cannot hide a mismatch), with the
    // versions and names it took from 001_initial.sql and 002_inbox_id_only.sql.
    await pool.query(`CREATE SCHEMA "${schema}"`)
    for (const migration of postgresMigrations().filter((m) => m.version <= 2)) {
      await pool.query(renderPostgresMigration(migration, schema, 'txbox_'))
    }
    await pool.query(`
      CREATE TABLE "${schema}"."txbox_schema_version" (
        version    integer PRIMARY KEY,
        name       text NOT NULL,
        applied_at timestamptz NOT NULL
      )`)
    const appliedAt = new Date('2026-01-02T03:04:05.678Z')
    await pool.query(
      `INSERT INTO "${schema}"."txbox_schema_version" (version, name, applied_at)
       VALUES (1, 'initial', $1), (2, 'inbox_id_only', $1)`,
      [appliedAt],
    )
    const history = async () =>
      (
        await pool.query<{ version: number; name: string; applied_at: Date }>(
          `SELECT version, name, applied_at FROM "${schema}"."txbox_schema_version" ORDER BY version`,
        )
      ).rows
    const before = await history()
    const store = createPostgresStore({ pool, schema })
    // Applying a step again would also record it again, which the primary key refuses.
    await store.migrate()
    await store.migrate()
    const after = await history()
    expect(after.slice(0, 2)).toEqual(before)
    expect(after.slice(2).map((row) => [row.version, row.name])).toEqual([
      [3, 'wakeup'],
      [4, 'ordering'],
      [5, 'unkeyed_claimable'],
    ])
    expect(before.map((row) => row.applied_at.getTime())).toEqual([appliedAt.getTime(), appliedAt.getTime()])
    await store.outbox.findOrCreate({ eventId: 'a', subject: 's', payload: 'p' })
    const [claimed] = await store.outbox.claim({ leaseMs: 30_000, workerId: 'w' })
    expect(claimed?.eventId).toBe('a')
    const delivery = { eventId: 'd', subject: 's', payload: 'p', stream: 'S', streamSeq: 1 }
    expect((await store.inbox.claim(delivery, { leaseMs: 30_000, workerId: 'w' })).shouldProcess).toBe(true)
  })

  it('upgrades a version 1 schema: a new id at a stored (stream, streamSeq) is a new event', async () => {
    const schema = freshSchema()
    schemas.push(schema)
    const pool = pools[0]!
    // The schema exactly as version 1 of migrate() left it, with its UNIQUE (stream, stream_seq).
    const [initial] = postgresMigrations()
    const sql = migrationSql(schema, 'txbox_')
    await pool.query(`CREATE SCHEMA "${schema}"`)
    await pool.query(renderPostgresMigration(initial!, schema, 'txbox_'))
    await pool.query(sql.createVersionTable)
    await pool.query(sql.recordVersion, [initial!.version, initial!.name, new Date()])
    const store = createPostgresStore({ pool, schema })
    const lease = { leaseMs: 30_000, workerId: 'w' }
    const old = { eventId: 'old-7', subject: 'orders.created', payload: '{}', stream: 'ORDERS', streamSeq: 7 }
    expect((await store.inbox.claim(old, lease)).shouldProcess).toBe(true)
    await store.inbox.markAsProcessed('old-7')
    const reused = { ...old, eventId: 'new-7' }
    // Before the upgrade the old constraint refuses the new event (version 1's queries merged it).
    await expect(store.inbox.claim(reused, lease)).rejects.toThrow(StorageError)

    await store.migrate()
    expect(await versions(schema)).toEqual(postgresMigrations().map((m) => m.version))
    const claimed = await store.inbox.claim(reused, lease)
    expect(claimed.shouldProcess).toBe(true)
    expect(claimed.event).toMatchObject({ eventId: 'new-7', stream: 'ORDERS', streamSeq: 7, deliveries: 1 })
    const created = await store.inbox.findOrCreate({ ...old, eventId: 'other-7' })
    expect(created).toMatchObject({ eventId: 'other-7', deliveries: 1 })
    expect((await store.inbox.get('old-7'))?.status).toBe('processed')
    const constraints = await pool.query<{ conname: string }>(
      `SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass ORDER BY conname`,
      [`"${schema}"."txbox_inbox"`],
    )
    expect(constraints.rows.map((row) => row.conname)).not.toContain('txbox_inbox_stream_key')
  })

  it('upgrades a version 3 outbox in place: stored events read as unkeyed and are claimed as before; keys work after', async () => {
    const schema = freshSchema()
    schemas.push(schema)
    const pool = pools[0]!
    const sql = migrationSql(schema, 'txbox_')
    await pool.query(`CREATE SCHEMA "${schema}"`)
    await pool.query(sql.createVersionTable)
    for (const migration of postgresMigrations().filter((m) => m.version <= 3)) {
      await pool.query(renderPostgresMigration(migration, schema, 'txbox_'))
      await pool.query(sql.recordVersion, [migration.version, migration.name, new Date()])
    }
    // Rows as version 3's statements wrote them: one pending, one failed.
    const table = `"${schema}"."txbox_outbox"`
    await pool.query(
      `INSERT INTO ${table} (event_id, subject, payload, status, enqueued_at, available_at, retry_count, error_message)
       VALUES ('v3-pending', 's', 'p', 'pending', now(), now(), 0, NULL),
              ('v3-failed', 's', 'p', 'failed', now(), now(), 1, 'boom')`,
    )
    const before = await pool.query(`SELECT * FROM ${table} ORDER BY seq`)
    const store = createPostgresStore({ pool, schema })
    await store.migrate()
    expect(await versions(schema)).toEqual(postgresMigrations().map((m) => m.version))
    const after = await pool.query(`SELECT * FROM ${table} ORDER BY seq`)
    expect(after.rows).toEqual(before.rows.map((row) => ({ ...row, ordering_key: null, key_seq: null })))
    const stored = await store.outbox.get('v3-pending')
    expect(stored).not.toHaveProperty('orderingKey')
    expect(stored).not.toHaveProperty('keySeq')
    const keyed = await store.outbox.findOrCreate({
      eventId: 'v4-keyed',
      subject: 's',
      payload: 'p',
      orderingKey: 'k',
    })
    expect(keyed.keySeq).toBe(1)
    // The old failed row holds no key (it has none): both the old pending one and the new head go.
    const claimed = await store.outbox.claim({ leaseMs: 30_000, workerId: 'w' })
    expect(claimed.map((event) => event.eventId)).toEqual(['v3-pending', 'v4-keyed'])
  })
})
