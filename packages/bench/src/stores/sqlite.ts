import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { EnqueueParams, InboxParams } from '@txbox/core'
import type { SqliteConnection } from '@txbox/sqlite'
import Database from 'better-sqlite3'
import { sqliteRawOutbox } from '../raw-relay/sqlite.js'
import { claimThenMark } from '../raw-relay/types.js'
import { enqueueIn } from '../scenarios.js'
import type { Claimer, Counter, Namespace, Target } from '../types.js'
import { setUpOrClose } from './connections.js'
import { uniqueName } from './names.js'
import { openSqlite } from './sqlite-file.js'

let statements = 0
let patched = false
/** SQLite has no round trips: count the statements executed (Statement run/get/all/iterate, Database exec). */
const patchCounter = (db: Database.Database): void => {
  if (patched) return
  patched = true
  const statementProto = Object.getPrototypeOf(db.prepare('SELECT 1')) as Record<string, unknown>
  for (const method of ['run', 'get', 'all', 'iterate']) {
    const original = statementProto[method] as (...a: unknown[]) => unknown
    statementProto[method] = function (this: unknown, ...args: unknown[]) {
      statements++
      return original.apply(this, args)
    }
  }
  const dbProto = Database.prototype as unknown as Record<string, unknown>
  const exec = dbProto.exec as (...a: unknown[]) => unknown
  dbProto.exec = function (this: unknown, ...args: unknown[]) {
    statements++
    return exec.apply(this, args)
  }
}

const counter: Counter = {
  unit: 'statements',
  reset: () => {
    statements = 0
  },
  value: () => statements,
}

export const sqliteTarget = async (): Promise<Target> => {
  const dir = mkdtempSync(join(tmpdir(), 'txbox-bench-'))
  const file = join(dir, 'bench.db')
  const removeDir = () => rmSync(dir, { recursive: true, force: true })
  const probe = openSqlite(file)
  try {
    patchCounter(probe.client)
    return {
      name: 'sqlite',
      serverVersion: `${await probe.serverVersion()} (better-sqlite3, file DB, WAL, synchronous=NORMAL)`,
      counter,
      scale: 1,
      namespace: () => sqliteNamespace(file),
      // Each namespace closes its connections in dispose(); the file goes with the target.
      close: async () => removeDir(),
    }
  } catch (error) {
    removeDir()
    throw error
  } finally {
    await probe.close()
  }
}

/**
 * A fresh table prefix on a connection of its own (the adapter's store and the raw side
 * share it); claimers after the first each get one more on the same file, closed with the
 * namespace.
 */
const sqliteNamespace = async (file: string): Promise<Namespace> => {
  const prefix = `${uniqueName('b')}_`
  const first = openSqlite(file, prefix)
  const { store, client: db } = first
  const connections = [first]
  const outbox = `${prefix}outbox`
  const inbox = `${prefix}inbox`
  const orders = `${prefix}orders`
  await setUpOrClose(first, async () => {
    await store.migrate()
    db.exec(`CREATE TABLE ${orders} (id INTEGER PRIMARY KEY, ref TEXT NOT NULL, total INTEGER NOT NULL)`)
  })

  const insertOneSql = `INSERT INTO ${outbox} (event_id, subject, payload, headers, status, enqueued_at, retry_count, available_at)
    VALUES (?, ?, ?, ?, 'pending', ?, 0, ?)`
  const statementsFor = (conn: Database.Database) => ({
    insertOne: conn.prepare(insertOneSql),
  })
  const main = statementsFor(db)
  const insertManyCache = new Map<number, Database.Statement>()
  const insertMany = (n: number): Database.Statement => {
    let statement = insertManyCache.get(n)
    if (!statement) {
      statement = db.prepare(
        `INSERT INTO ${outbox} (event_id, subject, payload, headers, status, enqueued_at, retry_count, available_at) VALUES ${Array.from(
          { length: n },
          () => "(?, ?, ?, ?, 'pending', ?, 0, ?)",
        ).join(', ')}`,
      )
      insertManyCache.set(n, statement)
    }
    return statement
  }
  const manyParams = (events: readonly EnqueueParams[]) => {
    const now = Date.now()
    const params: unknown[] = []
    for (const e of events) params.push(e.eventId, e.subject, e.payload, e.headers ?? null, now, now)
    return params
  }
  const insertOrder = db.prepare(`INSERT INTO ${orders} (id, ref, total) VALUES (?, ?, ?)`)
  const inboxUpsert = db.prepare(`INSERT INTO ${inbox}
      (event_id, subject, payload, headers, stream, stream_seq, status, received_at, deliveries, claimed_at, claimed_by, lease_until)
    VALUES (?, ?, ?, ?, ?, ?, 'processing', ?, 1, ?, ?, ?)
    ON CONFLICT (event_id) DO UPDATE SET deliveries = deliveries + 1`)
  const inboxDone =
    db.prepare(`UPDATE ${inbox} SET status = 'processed', processed_at = ?, claimed_by = NULL, lease_until = NULL
    WHERE event_id = ?`)
  let orderId = 0

  const inTx = async (write: () => unknown) => {
    db.exec('BEGIN IMMEDIATE')
    try {
      const id = ++orderId
      insertOrder.run(id, `order-${id}`, 100)
      await write()
      db.exec('COMMIT')
    } catch (error) {
      if (db.inTransaction) db.exec('ROLLBACK')
      throw error
    }
  }

  const claimers: Claimer[] = []
  const claimerOn = (connection: SqliteConnection): Claimer => {
    const raw = sqliteRawOutbox(connection.client, prefix)
    return {
      outbox: connection.store.outbox,
      rawClaimAndMark: (workerId, limit) => claimThenMark(raw, workerId, limit),
    }
  }

  return {
    outbox: store.outbox,
    inbox: store.inbox,
    endpoint: { store: 'sqlite', file, prefix },
    async rawInsertOne(e) {
      const now = Date.now()
      main.insertOne.run(e.eventId, e.subject, e.payload, e.headers ?? null, now, now)
    },
    async rawInsertMany(events) {
      insertMany(events.length).run(...manyParams(events))
    },
    adapterTx: (events) => inTx(() => enqueueIn(store.outbox, events, db)),
    rawTx: (events) =>
      inTx(() => {
        const [event] = events
        if (events.length !== 1 || !event) return insertMany(events.length).run(...manyParams(events))
        const now = Date.now()
        return main.insertOne.run(
          event.eventId,
          event.subject,
          event.payload,
          event.headers ?? null,
          now,
          now,
        )
      }),
    concurrentTx:
      'serialized by nature (one writer per file): a better-sqlite3 connection holds one transaction at a time, and a second connection in the same process would block the event loop in its busy wait for the lock the first holds; enqueue-tx measures the one writer',
    // A separate better-sqlite3 connection per claimer, all on the same file.
    async claimer(k) {
      while (claimers.length <= k) {
        if (claimers.length > 0) connections.push(openSqlite(file, prefix))
        claimers.push(claimerOn(connections[claimers.length] as SqliteConnection))
      }
      return claimers[k] as Claimer
    },
    async prefill(events) {
      db.transaction(() => {
        for (let i = 0; i < events.length; i += 100) {
          const group = events.slice(i, i + 100)
          insertMany(group.length).run(...manyParams(group))
        }
      })()
    },
    async rawInboxClaimAndMark(m: InboxParams, workerId) {
      const now = Date.now()
      const result = inboxUpsert.run(
        m.eventId,
        m.subject,
        m.payload,
        m.headers ?? null,
        m.stream ?? null,
        m.streamSeq ?? null,
        now,
        now,
        workerId,
        now + 60_000,
      )
      if (result.changes === 1) inboxDone.run(Date.now(), m.eventId)
    },
    async dispose() {
      try {
        db.exec(
          `DROP TABLE IF EXISTS ${outbox}; DROP TABLE IF EXISTS ${inbox}; DROP TABLE IF EXISTS ${orders};`,
        )
      } finally {
        await Promise.all(connections.map((connection) => connection.close()))
      }
    },
  }
}
