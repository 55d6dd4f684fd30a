import type { EnqueueParams, InboxParams } from '@txbox/core'
import { connectMySql } from '@txbox/mysql'
import mysqlCore from 'mysql2'
import type { PoolConnection, ResultSetHeader } from 'mysql2/promise'
import { mySqlDateTime as dt, mySqlRawOutbox } from '../raw-relay/mysql.js'
import { claimThenMark } from '../raw-relay/types.js'
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

  const raw = mySqlRawOutbox(pool, prefix)
  const claimer: Claimer = {
    outbox: store.outbox,
    rawClaimAndMark: (workerId, limit) => claimThenMark(raw, workerId, limit),
  }

  return {
    outbox: store.outbox,
    inbox: store.inbox,
    endpoint: { store: 'mysql', url, prefix },
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
