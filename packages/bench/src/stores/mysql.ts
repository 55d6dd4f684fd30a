import type { EnqueueParams, InboxParams } from '@txbox/core'
import { connectMySql } from '@txbox/mysql'
import mysqlCore from 'mysql2'
import type { PoolConnection, ResultSetHeader, RowDataPacket } from 'mysql2/promise'
import { enqueueIn } from '../scenarios.js'
import type { Claimer, Counter, Namespace, Target } from '../types.js'
import { setUpOrClose } from './connections.js'
import { uniqueName } from './names.js'

let roundTrips = 0
let patched = false
/**
 * Round trips = packets mysql2 writes: one per query, execute or transaction-control command,
 * plus one for a PREPARE that is not in the connection's statement cache yet.
 */
const patchCounter = (): void => {
  if (patched) return
  patched = true
  const proto = (mysqlCore as unknown as { Connection: { prototype: Record<string, unknown> } }).Connection
    .prototype
  const original = proto.writePacket as (...a: unknown[]) => unknown
  proto.writePacket = function (this: unknown, ...args: unknown[]) {
    roundTrips++
    return original.apply(this, args)
  }
}

const counter: Counter = {
  unit: 'round trips',
  reset: () => {
    roundTrips = 0
  },
  value: () => roundTrips,
}

/** DATETIME(3) text in UTC, as the adapter stores it. */
const dt = (ms: number = Date.now()): string => new Date(ms).toISOString().slice(0, 23).replace('T', ' ')

/** Connections in each namespace's pool (the adapter and the raw side share it): the size the bench has always measured with. */
const POOL_SIZE = 8

export const mySqlTarget = async (url: string): Promise<Target> => {
  patchCounter()
  const probe = connectMySql(url, { poolSize: POOL_SIZE })
  try {
    return {
      name: 'mysql',
      serverVersion: await probe.serverVersion(),
      counter,
      scale: 0.5,
      relayEvents: 10_000,
      namespace: () => mySqlNamespace(url),
      // Each namespace owns its pool and ends it in dispose().
      close: async () => {},
    }
  } finally {
    await probe.close()
  }
}

/** InnoDB picks a deadlock victim among concurrent claimers; a real claimer retries it, so the raw one does too. */
const retryDeadlocks = async <T>(fn: () => Promise<T>): Promise<T> => {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn()
    } catch (error) {
      const errno = (error as { errno?: number }).errno
      if ((errno !== 1213 && errno !== 1205) || attempt >= 10) throw error
    }
  }
}

/** A fresh table prefix on a pool of its own: the adapter's store and the raw statements share that pool. */
const mySqlNamespace = async (url: string): Promise<Namespace> => {
  const prefix = `${uniqueName('b')}_`
  const connection = connectMySql(url, { prefix, poolSize: POOL_SIZE })
  const { store, client: pool } = connection
  const outbox = `\`${prefix}outbox\``
  const inbox = `\`${prefix}inbox\``
  const orders = `\`${prefix}orders\``
  await setUpOrClose(connection, async () => {
    await store.migrate()
    await pool.query(
      `CREATE TABLE ${orders} (id BIGINT PRIMARY KEY, ref VARCHAR(64) NOT NULL, total INT NOT NULL)`,
    )
  })
  const columns = '(event_id, subject, payload, headers, status, enqueued_at, available_at, retry_count)'
  const insertOne = `INSERT INTO ${outbox} ${columns} VALUES (?, ?, ?, ?, 'pending', ?, ?, 0)`
  const insertMany = (n: number) =>
    `INSERT INTO ${outbox} ${columns} VALUES ${Array.from({ length: n }, () => "(?, ?, ?, ?, 'pending', ?, ?, 0)").join(', ')}`
  const manyParams = (events: readonly EnqueueParams[]) => {
    const now = dt()
    const params: Array<string | null> = []
    for (const e of events) params.push(e.eventId, e.subject, e.payload, e.headers ?? null, now, now)
    return params
  }
  const insertOrder = `INSERT INTO ${orders} (id, ref, total) VALUES (?, ?, ?)`
  const selectDue = `SELECT seq, event_id, subject, payload, headers FROM ${outbox} FORCE INDEX (ix_claim)
    WHERE status = 'pending' AND available_at <= ? ORDER BY seq LIMIT ? FOR UPDATE SKIP LOCKED`
  const inboxUpsert = `INSERT INTO ${inbox}
      (event_id, subject, payload, headers, stream, stream_seq, status, received_at, deliveries, claimed_at, claimed_by, lease_until)
    VALUES (?, ?, ?, ?, ?, ?, 'processing', ?, 1, ?, ?, ?)
    ON DUPLICATE KEY UPDATE deliveries = deliveries + 1`
  const inboxDone = `UPDATE ${inbox} SET status = 'processed', processed_at = ?, claimed_by = NULL, lease_until = NULL WHERE event_id = ?`
  let orderId = 0

  const inTx = async (write: (connection: PoolConnection) => Promise<unknown>) => {
    const connection = await pool.getConnection()
    try {
      await connection.beginTransaction()
      const id = ++orderId
      await connection.execute(insertOrder, [id, `order-${id}`, 100])
      await write(connection)
      await connection.commit()
    } catch (error) {
      await connection.rollback()
      throw error
    } finally {
      connection.release()
    }
  }

  const claimer: Claimer = {
    outbox: store.outbox,
    rawClaimAndMark: (workerId, limit) => retryDeadlocks(() => rawClaimAndMark(workerId, limit)),
  }

  // SELECT ... FOR UPDATE SKIP LOCKED then UPDATE, in one short transaction (as the adapter does).
  const rawClaimAndMark = async (workerId: string, limit: number): Promise<number> => {
    const connection = await pool.getConnection()
    let ids: string[]
    try {
      await connection.beginTransaction()
      const now = Date.now()
      const [rows] = await connection.query<RowDataPacket[]>(selectDue, [dt(now), limit])
      if (rows.length === 0) {
        await connection.commit()
        return 0
      }
      const seqs = rows.map((row) => row.seq as number)
      await connection.query(
        `UPDATE ${outbox} SET status = 'publishing', claimed_by = ?, claimed_at = ?, lease_until = ? WHERE seq IN (?)`,
        [workerId, dt(now), dt(now + 60_000), seqs],
      )
      await connection.commit()
      ids = rows.map((row) => row.event_id as string)
    } catch (error) {
      await connection.rollback()
      throw error
    } finally {
      connection.release()
    }
    await retryDeadlocks(() =>
      pool.query(
        `UPDATE ${outbox} SET status = 'sent', sent_at = ?, claimed_by = NULL, lease_until = NULL WHERE event_id IN (?) AND claimed_by = ?`,
        [dt(), ids, workerId],
      ),
    )
    return ids.length
  }

  return {
    outbox: store.outbox,
    inbox: store.inbox,
    async rawInsertOne(e) {
      const now = dt()
      await pool.execute(insertOne, [e.eventId, e.subject, e.payload, e.headers ?? null, now, now])
    },
    async rawInsertMany(events) {
      await pool.execute(insertMany(events.length), manyParams(events))
    },
    adapterTx: (events) => inTx((connection) => enqueueIn(store.outbox, events, connection)),
    rawTx: (events) =>
      inTx((connection) => {
        const [event] = events
        if (events.length !== 1 || !event)
          return connection.execute(insertMany(events.length), manyParams(events))
        const now = dt()
        return connection.execute(insertOne, [
          event.eventId,
          event.subject,
          event.payload,
          event.headers ?? null,
          now,
          now,
        ])
      }),
    // One pool: concurrent claimers each hold their own pooled connection.
    claimer: async () => claimer,
    async prefill(events) {
      for (let i = 0; i < events.length; i += 500) {
        const group = events.slice(i, i + 500)
        await pool.query(insertMany(group.length), manyParams(group))
      }
    },
    async rawInboxClaimAndMark(m: InboxParams, workerId) {
      const now = Date.now()
      const [result] = await pool.execute<ResultSetHeader>(inboxUpsert, [
        m.eventId,
        m.subject,
        m.payload,
        m.headers ?? null,
        m.stream ?? null,
        m.streamSeq ?? null,
        dt(now),
        dt(now),
        workerId,
        dt(now + 60_000),
      ])
      // affectedRows: 1 = inserted, 2 = an existing row was updated.
      if (result.affectedRows === 1) await pool.execute(inboxDone, [dt(), m.eventId])
    },
    async dispose() {
      try {
        await pool.query(`DROP TABLE IF EXISTS ${outbox}, ${inbox}, ${orders}, \`${prefix}schema_version\``)
      } finally {
        await connection.close()
      }
    },
  }
}
