import type { EnqueueParams, InboxParams } from '@txbox/core'
import { connectPostgres } from '@txbox/postgres'
import pg from 'pg'
import { postgresRawOutbox } from '../raw-relay/postgres.js'
import { claimThenMark } from '../raw-relay/types.js'
import { enqueueIn } from '../scenarios.js'
import type { Claimer, Counter, Namespace, Target } from '../types.js'
import { setUpOrClose } from './connections.js'
import { uniqueName } from './names.js'

let roundTrips = 0
let patched = false
/** Every statement pg sends is one `Client#query` call (Pool#query delegates to a client). */
const patchCounter = (): void => {
  if (patched) return
  patched = true
  const original = pg.Client.prototype.query
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    roundTrips++
    return (original as (...a: unknown[]) => unknown).apply(this, args)
  } as typeof original
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

export const postgresTarget = async (url: string): Promise<Target> => {
  patchCounter()
  const probe = connectPostgres(url, { poolSize: POOL_SIZE })
  try {
    return {
      name: 'postgres',
      serverVersion: await probe.serverVersion(),
      counter,
      scale: 1,
      namespace: () => postgresNamespace(url),
      // Each namespace owns its pool and ends it in dispose().
      close: async () => {},
    }
  } finally {
    await probe.close()
  }
}

/** A fresh schema on a pool of its own: the adapter's store and the raw statements share that pool. */
const postgresNamespace = async (url: string): Promise<Namespace> => {
  const schema = uniqueName('bench')
  const connection = connectPostgres(url, { schema, poolSize: POOL_SIZE })
  const { store, client: pool } = connection
  const outbox = `"${schema}"."txbox_outbox"`
  const inbox = `"${schema}"."txbox_inbox"`
  const orders = `"${schema}"."orders"`
  await setUpOrClose(connection, async () => {
    await store.migrate()
    await pool.query(
      `CREATE TABLE ${orders} (id bigint PRIMARY KEY, ref text NOT NULL, total integer NOT NULL)`,
    )
  })

  const insertOne = `INSERT INTO ${outbox} (event_id, subject, payload, headers, status, enqueued_at, retry_count, available_at)
    VALUES ($1, $2, $3, $4, 'pending', $5, 0, $5)`
  const insertMany = (n: number) =>
    `INSERT INTO ${outbox} (event_id, subject, payload, headers, status, enqueued_at, retry_count, available_at) VALUES ${Array.from(
      { length: n },
      (_, i) =>
        `($${i * 4 + 1}, $${i * 4 + 2}, $${i * 4 + 3}, $${i * 4 + 4}, 'pending', $${n * 4 + 1}, 0, $${n * 4 + 1})`,
    ).join(', ')}`
  const manyParams = (events: readonly EnqueueParams[]) => {
    const params: unknown[] = []
    for (const e of events) params.push(e.eventId, e.subject, e.payload, e.headers ?? null)
    params.push(new Date())
    return params
  }
  const insertOrder = `INSERT INTO ${orders} (id, ref, total) VALUES ($1, $2, $3)`
  const inboxUpsert = `INSERT INTO ${inbox}
      (event_id, subject, payload, headers, stream, stream_seq, status, received_at, deliveries, claimed_at, claimed_by, lease_until)
    VALUES ($1, $2, $3, $4, $5, $6, 'processing', $7, 1, $7, $8, $9)
    ON CONFLICT (event_id) DO UPDATE SET deliveries = ${inbox}.deliveries + 1
    RETURNING (xmax = 0) AS inserted`
  const inboxDone = `UPDATE ${inbox} SET status = 'processed', processed_at = $2, claimed_by = NULL, lease_until = NULL
    WHERE event_id = $1`
  let orderId = 0

  const inTx = async (write: (client: pg.PoolClient) => Promise<unknown>) => {
    const client = await pool.connect()
    try {
      await client.query('BEGIN')
      const id = ++orderId
      await client.query(insertOrder, [id, `order-${id}`, 100])
      await write(client)
      await client.query('COMMIT')
    } catch (error) {
      await client.query('ROLLBACK')
      throw error
    } finally {
      client.release()
    }
  }

  const raw = postgresRawOutbox(pool, schema)
  const claimer: Claimer = {
    outbox: store.outbox,
    rawClaimAndMark: (workerId, limit) => claimThenMark(raw, workerId, limit),
  }

  return {
    outbox: store.outbox,
    inbox: store.inbox,
    endpoint: { store: 'postgres', url, schema },
    async rawInsertOne(e) {
      await pool.query(insertOne, [e.eventId, e.subject, e.payload, e.headers ?? null, new Date()])
    },
    async rawInsertMany(events) {
      await pool.query(insertMany(events.length), manyParams(events))
    },
    adapterTx: (events) => inTx((client) => enqueueIn(store.outbox, events, client)),
    rawTx: (events) =>
      inTx((client) => {
        const [event] = events
        return events.length === 1 && event
          ? client.query(insertOne, [
              event.eventId,
              event.subject,
              event.payload,
              event.headers ?? null,
              new Date(),
            ])
          : client.query(insertMany(events.length), manyParams(events))
      }),
    // One pool: concurrent claimers each hold their own pooled connection for each statement.
    claimer: async () => claimer,
    async prefill(events) {
      for (let i = 0; i < events.length; i += 500) {
        const group = events.slice(i, i + 500)
        await pool.query(insertMany(group.length), manyParams(group))
      }
    },
    async rawInboxClaimAndMark(m: InboxParams, workerId) {
      const now = new Date()
      const inserted = (
        await pool.query<{ inserted: boolean }>(inboxUpsert, [
          m.eventId,
          m.subject,
          m.payload,
          m.headers ?? null,
          m.stream ?? null,
          m.streamSeq ?? null,
          now,
          workerId,
          new Date(now.getTime() + 60_000),
        ])
      ).rows[0]?.inserted
      if (inserted) await pool.query(inboxDone, [m.eventId, new Date()])
    },
    async dispose() {
      try {
        await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      } finally {
        await connection.close()
      }
    },
  }
}
