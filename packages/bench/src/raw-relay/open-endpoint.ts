import type { OutboxRepository } from '@txbox/core'
import { openSqlite } from '../stores/sqlite-file.js'
import { mySqlRawOutbox } from './mysql.js'
import { postgresRawOutbox } from './postgres.js'
import { redisRawOutbox } from './redis.js'
import { sqliteRawOutbox } from './sqlite.js'
import type { RawOutbox, RelayEndpoint } from './types.js'

/** A relay process's store: the adapter's outbox and, where the bench has one, the raw relay's statements on the same connection. */
export interface OpenedEndpoint {
  readonly outbox: OutboxRepository<unknown>
  /** Undefined for the stores without a raw relay (MongoDB, DynamoDB). */
  readonly raw: RawOutbox | undefined
  close(): Promise<void>
}

/** One pooled connection per relay process is all either relay uses at a time (claim, then mark). */
const POOL_SIZE = 2

/** Opens, in a relay process, the namespace the parent created: the adapter's `connect<Db>` with the same schema or prefix. */
export const openEndpoint = async (endpoint: RelayEndpoint): Promise<OpenedEndpoint> => {
  switch (endpoint.store) {
    case 'postgres': {
      const { connectPostgres } = await import('@txbox/postgres')
      const connection = connectPostgres(endpoint.url, { schema: endpoint.schema, poolSize: POOL_SIZE })
      return {
        outbox: connection.store.outbox,
        raw: postgresRawOutbox(connection.client, endpoint.schema),
        close: () => connection.close(),
      }
    }
    case 'sqlite': {
      const connection = openSqlite(endpoint.file, endpoint.prefix)
      return {
        outbox: connection.store.outbox,
        raw: sqliteRawOutbox(connection.client, endpoint.prefix),
        close: () => connection.close(),
      }
    }
    case 'mysql': {
      const { connectMySql } = await import('@txbox/mysql')
      const connection = connectMySql(endpoint.url, { prefix: endpoint.prefix, poolSize: POOL_SIZE })
      return {
        outbox: connection.store.outbox,
        raw: mySqlRawOutbox(connection.client, endpoint.prefix),
        close: () => connection.close(),
      }
    }
    case 'redis': {
      const { connectRedis } = await import('@txbox/redis')
      const connection = connectRedis(endpoint.url, { prefix: endpoint.prefix })
      await connection.client.connect()
      return {
        outbox: connection.store.outbox,
        raw: redisRawOutbox(connection.client, endpoint.prefix),
        close: () => connection.close(),
      }
    }
    case 'mongodb': {
      const { connectMongoDb } = await import('@txbox/mongodb')
      const connection = connectMongoDb(endpoint.url, { prefix: endpoint.prefix })
      await connection.connect()
      return { outbox: connection.store.outbox, raw: undefined, close: () => connection.close() }
    }
    case 'dynamodb': {
      const { connectDynamoDb } = await import('@txbox/dynamodb')
      const connection = connectDynamoDb(endpoint.url, { prefix: endpoint.prefix })
      return { outbox: connection.store.outbox, raw: undefined, close: () => connection.close() }
    }
  }
}
