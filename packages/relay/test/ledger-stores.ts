/**
 * The six stores of the ledger test, each opened as a {@link LedgerPair}: the store on a
 * fresh prefix/schema/table, the application's own order and ledger tables beside it, and
 * how to close everything. PostgreSQL and Redis use the shared servers (never restarted);
 * MySQL, MongoDB (FerretDB) and DynamoDB Local get a private server each, started by
 * scripts/services.sh, which the scenario crashes and restarts mid-drain.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  CreateTableCommand,
  ScanCommand,
  type ScanCommandInput,
  type TransactWriteItem,
  TransactWriteItemsCommand,
} from '@aws-sdk/client-dynamodb'
import type { TransactionRunner } from '@txbox/core'
import { createDynamoDbStore } from '@txbox/dynamodb'
import { createMongoDbStore } from '@txbox/mongodb'
import { createMySqlStore } from '@txbox/mysql'
import { createPostgresStore, type PostgresTransaction } from '@txbox/postgres'
import { createRedisStore } from '@txbox/redis'
import { createSqliteStore, type SqliteDatabase } from '@txbox/sqlite'
import Database from 'better-sqlite3'
import { type ChainableCommander, Redis } from 'ioredis'
import { type ClientSession, MongoClient, MongoServerError } from 'mongodb'
import { createPool, type PoolConnection, type RowDataPacket } from 'mysql2/promise'
import pg from 'pg'
import { CrashableDynamoDbLocal } from './dynamodb-local-crash.js'
import { PrivateService } from './harness.js'
import type { LedgerPair } from './ledger-scenario.js'

/** A pair ready to run, and how to release it (drop its data, stop its private server). */
export interface OpenedPair<Tx> {
  pair: LedgerPair<Tx>
  close(): Promise<void>
}

const uniqueSuffix = (): string => `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`

/** How long a crashed private server stays down before it is started again. */
const CRASH_DOWN_MS = 1_000

/** Runs `steps` in order, every one even if an earlier one failed; rethrows the first failure. */
const releaseAll = async (...steps: Array<() => unknown>): Promise<void> => {
  let first: unknown
  for (const step of steps) {
    try {
      await step()
    } catch (error) {
      first ??= error
    }
  }
  if (first !== undefined) throw first
}

// ------------------------------------------------------------------ PostgreSQL (shared) ---

export const openPostgres = async (url: string): Promise<OpenedPair<PostgresTransaction>> => {
  const schema = `ledger_${uniqueSuffix()}`
  const pool = new pg.Pool({ connectionString: url, max: 12 })
  const store = createPostgresStore({ pool, schema })
  await store.migrate()
  await pool.query(`CREATE TABLE "${schema}".orders (id text PRIMARY KEY)`)
  // No unique key on purpose: a second run of the handler would show as a second row.
  await pool.query(`CREATE TABLE "${schema}".ledger (row_id bigserial PRIMARY KEY, event_id text NOT NULL)`)
  const transaction: TransactionRunner<PostgresTransaction> = async (fn) => {
    const client = await pool.connect()
    try {
      await client.query('BEGIN')
      const result = await fn(client)
      await client.query('COMMIT')
      return result
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {})
      throw error
    } finally {
      client.release()
    }
  }
  return {
    pair: {
      name: 'pg',
      server: 'PostgreSQL (shared server)',
      relayArgs: ['--store', 'postgres', '--url', url, '--schema', schema],
      outbox: store.outbox,
      inbox: store.inbox,
      transaction,
      inboxConcurrency: 8,
      heldBy: async (workerId) => {
        const { rows } = await pool.query<{ held: string }>(
          `SELECT count(*) AS held FROM "${schema}".txbox_outbox WHERE status = 'publishing' AND claimed_by = $1`,
          [workerId],
        )
        return Number(rows[0]?.held ?? 0)
      },
      enqueue: async (events, rollback) => {
        const client = await pool.connect()
        try {
          await client.query('BEGIN')
          await client.query(`INSERT INTO "${schema}".orders (id) VALUES ($1)`, [events[0]?.eventId])
          await store.outbox.findOrCreateMany(events, { tx: client })
          await client.query(rollback ? 'ROLLBACK' : 'COMMIT')
        } finally {
          client.release()
        }
      },
      recordInLedger: async (tx, eventId) => {
        await (tx as pg.PoolClient).query(`INSERT INTO "${schema}".ledger (event_id) VALUES ($1)`, [eventId])
        return 'applied'
      },
      ledger: async () => {
        const { rows } = await pool.query<{ event_id: string; rows: string }>(
          `SELECT event_id, count(*) AS rows FROM "${schema}".ledger GROUP BY event_id`,
        )
        return new Map(rows.map((row) => [row.event_id, Number(row.rows)]))
      },
    },
    close: () =>
      releaseAll(
        () => pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`),
        () => pool.end(),
      ),
  }
}

// ------------------------------------------------------------------------------- SQLite ---

export const openSqlite = async (): Promise<OpenedPair<SqliteDatabase>> => {
  const dir = mkdtempSync(join(tmpdir(), 'txbox-ledger-sqlite-'))
  const outboxFile = join(dir, 'outbox.db')
  const producerDb = new Database(outboxFile)
  const outboxStore = createSqliteStore({ db: producerDb })
  await outboxStore.migrate()
  producerDb.exec('CREATE TABLE orders (id TEXT PRIMARY KEY)')
  // The inbox lives in its own database file, on the consumer's side.
  const inboxDb: SqliteDatabase = new Database(join(dir, 'inbox.db'))
  const inboxStore = createSqliteStore({ db: inboxDb })
  await inboxStore.migrate()
  inboxDb.exec('CREATE TABLE ledger (row_id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL)')
  // One connection, one transaction at a time: the processor runs with concurrency 1.
  const transaction: TransactionRunner<SqliteDatabase> = async (fn) => {
    inboxDb.exec('BEGIN IMMEDIATE')
    try {
      const result = await fn(inboxDb)
      inboxDb.exec('COMMIT')
      return result
    } catch (error) {
      if (inboxDb.inTransaction) inboxDb.exec('ROLLBACK')
      throw error
    }
  }
  return {
    pair: {
      name: 'sqlite',
      server: 'SQLite files (no server)',
      relayArgs: ['--store', 'sqlite', '--url', outboxFile],
      // The producer's repository reads the same file the relays write.
      outbox: outboxStore.outbox,
      inbox: inboxStore.inbox,
      transaction,
      inboxConcurrency: 1,
      heldBy: async (workerId) =>
        producerDb
          .prepare<[string], { held: number }>(
            "SELECT count(*) AS held FROM txbox_outbox WHERE status = 'publishing' AND claimed_by = ?",
          )
          .get(workerId)?.held ?? 0,
      enqueue: async (events, rollback) => {
        producerDb.exec('BEGIN IMMEDIATE')
        try {
          producerDb.prepare('INSERT INTO orders (id) VALUES (?)').run(events[0]?.eventId)
          await outboxStore.outbox.findOrCreateMany(events, { tx: producerDb })
          producerDb.exec(rollback ? 'ROLLBACK' : 'COMMIT')
        } catch (error) {
          if (producerDb.inTransaction) producerDb.exec('ROLLBACK')
          throw error
        }
      },
      recordInLedger: async (tx, eventId) => {
        ;(tx as SqliteDatabase).prepare('INSERT INTO ledger (event_id) VALUES (?)').run(eventId)
        return 'applied'
      },
      ledger: async () => {
        const rows = inboxDb
          .prepare<[], { event_id: string; rows: number }>(
            'SELECT event_id, count(*) AS rows FROM ledger GROUP BY event_id',
          )
          .all()
        return new Map(rows.map((row) => [row.event_id, row.rows]))
      },
    },
    close: () =>
      releaseAll(
        () => producerDb.close(),
        () => inboxDb.close(),
        () => rmSync(dir, { recursive: true, force: true }),
      ),
  }
}

// ------------------------------------------------------------------------ Redis (shared) ---

export const openRedis = async (url: string): Promise<OpenedPair<ChainableCommander>> => {
  const keyPrefix = `ledger${uniqueSuffix()}`
  const base = `txbox:{${keyPrefix}}`
  const redis = new Redis(url)
  const store = createRedisStore({ redis, keyPrefix })
  await store.migrate()
  // The application's own keys share the store's hash tag, so one MULTI may hold them on a Cluster.
  const ledgerKey = `${base}:app:ledger`
  const exec = async (multi: ChainableCommander): Promise<void> => {
    const replies = await multi.exec()
    const failed = replies?.find(([error]) => error)
    if (!replies || failed) throw failed?.[0] ?? new Error('EXEC aborted')
  }
  // MULTI queues on the client until EXEC: not calling exec() is the rollback.
  const transaction: TransactionRunner<ChainableCommander> = async (fn) => {
    const multi = redis.multi()
    const result = await fn(multi)
    await exec(multi)
    return result
  }
  return {
    pair: {
      name: 'redis',
      server: 'Redis (shared server)',
      relayArgs: ['--store', 'redis', '--url', url, '--prefix', keyPrefix],
      outbox: store.outbox,
      inbox: store.inbox,
      transaction,
      inboxConcurrency: 8,
      heldBy: async (workerId) => {
        const ids = await redis.zrange(`${base}:outbox:publishing`, 0, -1)
        if (ids.length === 0) return 0
        const pipeline = redis.pipeline()
        for (const id of ids) pipeline.hget(`${base}:outbox:e:${id}`, 'claimedBy')
        const owners = (await pipeline.exec()) ?? []
        return owners.filter(([, owner]) => owner === workerId).length
      },
      enqueue: async (events, rollback) => {
        const multi = redis.multi()
        multi.set(`${base}:app:orders:${events[0]?.eventId}`, '1')
        await store.outbox.findOrCreateMany(events, { tx: multi })
        if (!rollback) await exec(multi)
      },
      recordInLedger: async (tx, eventId) => {
        ;(tx as ChainableCommander).hincrby(ledgerKey, eventId, 1)
        return 'applied'
      },
      ledger: async () => {
        const rows = await redis.hgetall(ledgerKey)
        return new Map(Object.entries(rows).map(([eventId, count]) => [eventId, Number(count)]))
      },
    },
    close: () =>
      releaseAll(
        async () => {
          let cursor = '0'
          do {
            const [next, keys] = await redis.scan(cursor, 'MATCH', `${base}:*`, 'COUNT', 1000)
            cursor = next
            if (keys.length > 0) await redis.del(...keys)
          } while (cursor !== '0')
        },
        () => redis.quit(),
      ),
  }
}

// -------------------------------------------------------------- MySQL / MariaDB (private) ---

export const openMySql = async (): Promise<OpenedPair<PoolConnection>> => {
  const server = await PrivateService.create('mariadb')
  await server.up()
  const url = `mysql://txbox:txbox@127.0.0.1:${server.port}/txbox`
  const tablePrefix = `ledger_${uniqueSuffix()}_`
  const pool = createPool({ uri: url, connectionLimit: 12, charset: 'utf8mb4_bin' })
  const store = createMySqlStore({ pool, tablePrefix })
  await store.migrate()
  await pool.query(`CREATE TABLE \`${tablePrefix}orders\` (id VARCHAR(255) PRIMARY KEY)`)
  // No unique key on purpose: a second run of the handler would show as a second row.
  await pool.query(
    `CREATE TABLE \`${tablePrefix}ledger\` (row_id BIGINT AUTO_INCREMENT PRIMARY KEY, event_id VARCHAR(255) NOT NULL)`,
  )
  const transaction: TransactionRunner<PoolConnection> = async (fn) => {
    const connection = await pool.getConnection()
    try {
      await connection.beginTransaction()
      const result = await fn(connection)
      await connection.commit()
      return result
    } catch (error) {
      await connection.rollback().catch(() => {})
      throw error
    } finally {
      connection.release()
    }
  }
  return {
    pair: {
      name: 'mysql',
      server: 'MariaDB (private instance)',
      relayArgs: ['--store', 'mysql', '--url', url, '--prefix', tablePrefix],
      outbox: store.outbox,
      inbox: store.inbox,
      transaction,
      inboxConcurrency: 8,
      heldBy: async (workerId) => {
        const [rows] = await pool.query<RowDataPacket[]>(
          `SELECT COUNT(*) AS held FROM \`${tablePrefix}outbox\` WHERE status = 'publishing' AND claimed_by = ?`,
          [workerId],
        )
        return Number(rows[0]?.held ?? 0)
      },
      enqueue: async (events, rollback) => {
        const connection = await pool.getConnection()
        try {
          await connection.beginTransaction()
          await connection.query(`INSERT INTO \`${tablePrefix}orders\` (id) VALUES (?)`, [events[0]?.eventId])
          await store.outbox.findOrCreateMany(events, { tx: connection })
          if (rollback) await connection.rollback()
          else await connection.commit()
        } catch (error) {
          await connection.rollback().catch(() => {})
          throw error
        } finally {
          connection.release()
        }
      },
      recordInLedger: async (tx, eventId) => {
        await (tx as PoolConnection).query(`INSERT INTO \`${tablePrefix}ledger\` (event_id) VALUES (?)`, [
          eventId,
        ])
        return 'applied'
      },
      ledger: async () => {
        const [rows] = await pool.query<RowDataPacket[]>(
          `SELECT event_id, COUNT(*) AS n FROM \`${tablePrefix}ledger\` GROUP BY event_id`,
        )
        return new Map(rows.map((row) => [String(row.event_id), Number(row.n)]))
      },
      restartServer: () => server.crashAndRestart(CRASH_DOWN_MS),
    },
    close: () =>
      releaseAll(
        () => pool.end(),
        () => server.destroy(),
      ),
  }
}

// ------------------------------------------------------------ MongoDB: FerretDB (private) ---

/**
 * FerretDB v1 has no transactions: the order and its events are two writes (a business
 * write that fails is simply not followed by the enqueue), and the handler's effect is made
 * idempotent by the event id as the ledger document's `_id` (a replay finds it there). The
 * private FerretDB keeps its data in its own database on the shared PostgreSQL; only the
 * FerretDB process is crashed.
 */
export const openMongo = async (postgresUrl: string): Promise<OpenedPair<ClientSession>> => {
  const suffix = uniqueSuffix()
  const backendDb = `ferretdb_ledger_${suffix}`
  const admin = new pg.Client({ connectionString: postgresUrl })
  await admin.connect()
  await admin.query(`CREATE DATABASE "${backendDb}"`)
  const backendUrl = new URL(postgresUrl)
  backendUrl.pathname = `/${backendDb}`
  const server = await PrivateService.create('mongodb', {
    TXBOX_FERRETDB_POSTGRESQL_URL: backendUrl.toString(),
  })
  await server.up()
  const url = `mongodb://127.0.0.1:${server.port}/ledger`
  const client = new MongoClient(url, { serverSelectionTimeoutMS: 30_000 })
  await client.connect()
  const db = client.db()
  const collectionPrefix = `ledger_${suffix}_`
  const store = createMongoDbStore({ db, collectionPrefix })
  await store.migrate()
  const orders = db.collection<{ _id: string }>(`${collectionPrefix}orders`)
  const ledger = db.collection<{ _id: string }>(`${collectionPrefix}ledger`)
  const outbox = db.collection(`${collectionPrefix}outbox`)
  // The order every "rolled back" business write collides with.
  const TAKEN = 'order-taken'
  await orders.insertOne({ _id: TAKEN })
  const duplicateKey = (error: unknown): boolean => error instanceof MongoServerError && error.code === 11000
  return {
    pair: {
      name: 'mongodb',
      server: 'FerretDB on PostgreSQL (private FerretDB process)',
      relayArgs: ['--store', 'mongodb', '--url', url, '--prefix', collectionPrefix],
      outbox: store.outbox,
      inbox: store.inbox,
      transaction: undefined,
      inboxConcurrency: 4,
      heldBy: (workerId) => outbox.countDocuments({ status: 'publishing', claimedBy: workerId }),
      enqueue: async (events, rollback) => {
        try {
          await orders.insertOne({ _id: rollback ? TAKEN : `order-${events[0]?.eventId}` })
        } catch (error) {
          if (rollback && duplicateKey(error)) return
          throw error
        }
        if (rollback) throw new Error('the colliding order write was accepted')
        await store.outbox.findOrCreateMany(events)
      },
      recordInLedger: async (_tx, eventId) => {
        try {
          await ledger.insertOne({ _id: eventId })
          return 'applied'
        } catch (error) {
          if (duplicateKey(error)) return 'replayed'
          throw error
        }
      },
      ledger: async () => {
        const docs = await ledger.find({}, { projection: { _id: 1 } }).toArray()
        const map = new Map<string, number>()
        for (const doc of docs) map.set(doc._id, (map.get(doc._id) ?? 0) + 1)
        return map
      },
      restartServer: () => server.crashAndRestart(CRASH_DOWN_MS),
    },
    close: () =>
      releaseAll(
        () => client.close(),
        () => server.destroy(),
        () => admin.query(`DROP DATABASE IF EXISTS "${backendDb}" WITH (FORCE)`),
        () => admin.end(),
      ),
  }
}

// ----------------------------------------------------------------- DynamoDB Local (private) ---

/**
 * DynamoDB Local keeps its tables in a directory, so a crash and restart keeps them; it is
 * crashed through {@link CrashableDynamoDbLocal}, which keeps the transactions it answered
 * (DynamoDB Local alone can lose them to a SIGKILL; real DynamoDB does not).
 */
export const openDynamo = async (): Promise<OpenedPair<TransactWriteItem[]>> => {
  const local = await CrashableDynamoDbLocal.start()
  const url = local.url
  const client = local.client()
  const suffix = uniqueSuffix()
  const tableName = `ledger_${suffix}`
  const appTable = `ledger_app_${suffix}`
  const store = createDynamoDbStore({ client, tableName })
  await store.migrate()
  await client.send(
    new CreateTableCommand({
      TableName: appTable,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
    }),
  )
  const scanAll = async (input: ScanCommandInput) => {
    const items = []
    let startKey: ScanCommandInput['ExclusiveStartKey']
    do {
      const page = await client.send(
        new ScanCommand({ ...input, ConsistentRead: true, ExclusiveStartKey: startKey }),
      )
      items.push(...(page.Items ?? []))
      startKey = page.LastEvaluatedKey
    } while (startKey !== undefined)
    return items
  }
  const commit = async (items: TransactWriteItem[]): Promise<void> => {
    if (items.length > 0) await client.send(new TransactWriteItemsCommand({ TransactItems: items }))
  }
  // The collector is the transaction: one TransactWriteItems with every action, or none.
  const transaction: TransactionRunner<TransactWriteItem[]> = async (fn) => {
    const items: TransactWriteItem[] = []
    const result = await fn(items)
    await commit(items)
    return result
  }
  const LEDGER = 'ledger#'
  return {
    pair: {
      name: 'dynamodb',
      server: 'DynamoDB Local, -dbPath (private instance)',
      relayArgs: ['--store', 'dynamodb', '--url', url, '--prefix', tableName],
      outbox: store.outbox,
      inbox: store.inbox,
      transaction,
      inboxConcurrency: 8,
      heldBy: async (workerId) =>
        (
          await scanAll({
            TableName: tableName,
            FilterExpression: '#status = :publishing AND #claimedBy = :worker',
            ExpressionAttributeNames: { '#status': 'status', '#claimedBy': 'claimedBy' },
            ExpressionAttributeValues: { ':publishing': { S: 'publishing' }, ':worker': { S: workerId } },
            ProjectionExpression: 'pk',
          })
        ).filter((item) => item.pk?.S?.startsWith('ob#e#') ?? false).length,
      enqueue: async (events, rollback) => {
        const items: TransactWriteItem[] = [
          { Put: { TableName: appTable, Item: { pk: { S: `order#${events[0]?.eventId}` } } } },
        ]
        await store.outbox.findOrCreateMany(events, { tx: items })
        if (!rollback) await commit(items)
      },
      recordInLedger: async (tx, eventId) => {
        // ADD, not a conditional put: a second run of the handler would show as runs = 2.
        ;(tx as TransactWriteItem[]).push({
          Update: {
            TableName: appTable,
            Key: { pk: { S: `${LEDGER}${eventId}` } },
            UpdateExpression: 'ADD runs :one',
            ExpressionAttributeValues: { ':one': { N: '1' } },
          },
        })
        return 'applied'
      },
      ledger: async () => {
        const items = await scanAll({
          TableName: appTable,
          FilterExpression: 'begins_with(pk, :ledger)',
          ExpressionAttributeValues: { ':ledger': { S: LEDGER } },
        })
        return new Map(
          items.map((item) => [(item.pk?.S ?? '').slice(LEDGER.length), Number(item.runs?.N ?? 0)]),
        )
      },
      restartServer: () => local.crashAndRestart(CRASH_DOWN_MS),
    },
    close: () =>
      releaseAll(
        () => client.destroy(),
        () => local.destroy(),
      ),
  }
}
