// Type-checked, never run: copied to types.mts (ES module), types.cts (CommonJS) and used as
// types.ts (bundler), so every entry point's declarations resolve under `import` and
// `require`. A file that resolved to no types (or to `any`) fails on the @ts-expect-error lines.

import { type ConformanceReport, type ConformanceTarget, runConformance } from '@txbox/conformance'
import { describeConformance } from '@txbox/conformance/vitest'
import {
  createMemoryStore,
  InboxProcessor,
  type OutboxEvent,
  OutboxRelay,
  type TxboxStore,
  ValidationError,
} from '@txbox/core'
import { createJetStreamInboxSource, createJetStreamPublisher, ensureStream } from '@txbox/core/nats'
import { connectDynamoDb, createDynamoDbStore } from '@txbox/dynamodb'
import { createConformanceTarget as dynamodbTarget } from '@txbox/dynamodb/conformance'
import { connectMongoDb, createMongoDbStore } from '@txbox/mongodb'
import { createConformanceTarget as mongodbTarget } from '@txbox/mongodb/conformance'
import { connectMySql, createMySqlStore } from '@txbox/mysql'
import { createConformanceTarget as mysqlTarget } from '@txbox/mysql/conformance'
import { connectPostgres, createPostgresStore } from '@txbox/postgres'
import { createConformanceTarget as postgresTarget } from '@txbox/postgres/conformance'
import { connectRedis, createRedisStore } from '@txbox/redis'
import { createConformanceTarget as redisTarget } from '@txbox/redis/conformance'
import { runRelayCli } from '@txbox/relay'
import { connectSqlite, createSqliteStore } from '@txbox/sqlite'
import { createConformanceTarget as sqliteTarget } from '@txbox/sqlite/conformance'
import type Database from 'better-sqlite3'
import type { NatsConnection } from 'nats'

export const factories = [
  createDynamoDbStore,
  createMongoDbStore,
  createMySqlStore,
  createPostgresStore,
  createRedisStore,
  createSqliteStore,
] as const
/** Every adapter's `connect<Db>`: a store from a URL (a file path for SQLite). */
export const connectors = [
  connectDynamoDb,
  connectMongoDb,
  connectMySql,
  connectPostgres,
  connectRedis,
  connectSqlite,
] as const
export const targets = [
  dynamodbTarget,
  mongodbTarget,
  mysqlTarget,
  postgresTarget,
  redisTarget,
  sqliteTarget,
] as const

export const quickstart = async (
  db: Database.Database,
  nc: NatsConnection,
): Promise<OutboxEvent | undefined> => {
  const store = createSqliteStore({ db })
  await store.migrate()
  await ensureStream(await nc.jetstreamManager(), { name: 'ORDERS', subjects: ['orders.>'] })
  const relay = new OutboxRelay({
    outbox: store.outbox,
    publisher: createJetStreamPublisher({ connection: nc }),
  })
  relay.start()
  const processor = new InboxProcessor({
    inbox: store.inbox,
    source: createJetStreamInboxSource({ connection: nc, stream: 'ORDERS', durable: 'billing' }),
    handler: async ({ event }) => {
      const eventId: string = event.eventId
      if (eventId === '') throw new ValidationError('app', 'empty id')
    },
  })
  await processor.start()
  await Promise.all([processor.stop(), relay.stop()])
  const memory: TxboxStore = createMemoryStore()
  const [claimed] = await memory.outbox.claim({ leaseMs: 1_000, workerId: 'w' })
  return claimed
}

export const certify = async (target: ConformanceTarget): Promise<ConformanceReport> => runConformance(target)
export const register = (target: ConformanceTarget): void => describeConformance(target)
export const relayExitCode: Promise<number> = runRelayCli(['--help'])

// The declarations are real: wrong calls are errors.
// @ts-expect-error the adapter name must be a string
export const wrongError = new ValidationError(42, 'message')
// @ts-expect-error createSqliteStore needs a database
export const wrongStore = createSqliteStore({})
// @ts-expect-error claim needs leaseMs and workerId
export const wrongClaim = (store: TxboxStore) => store.outbox.claim({ limit: 1 })
