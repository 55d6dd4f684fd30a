import { DynamoDBClient, type DynamoDBClientConfig, ListTablesCommand } from '@aws-sdk/client-dynamodb'
import {
  type ConnectOptions,
  checkUrlScheme,
  DEFAULT_CONNECT_TIMEOUT_MS,
  type StoreConnection,
  storeConnection,
  storeRegistration,
} from '@txbox/core'
import { createDynamoDbStore, type DynamoDbStore } from './dynamodb-store.js'
import { ADAPTER, classifyDynamoDbError } from './errors.js'

/** Options of {@link connectDynamoDb}; `prefix` is the table name (default `txbox`). */
export interface DynamoDbConnectOptions extends ConnectOptions {
  /** The AWS region. Default `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`. */
  readonly region?: string | undefined
  /** The store's `shards` option. */
  readonly shards?: number | undefined
  /** The store's `ttlDays` option. */
  readonly ttlDays?: number | undefined
}

/** A store opened by {@link connectDynamoDb}: on a DynamoDBClient that it owns. */
export type DynamoDbConnection = StoreConnection<DynamoDbStore, DynamoDBClient>

/** True for an endpoint that is not AWS itself (DynamoDB Local, LocalStack...). */
const isLocalEndpoint = (url: URL): boolean => !/(^|\.)amazonaws\.com(\.cn)?$/.test(url.hostname)

/** The endpoint URL, refused now when it can never work (DynamoDB speaks HTTP(S) only). */
const endpointOf = (url: string): URL => {
  const { schemes, example } = storeRegistration('dynamodb')
  return new URL(checkUrlScheme(ADAPTER, url, schemes, example))
}

/**
 * The DynamoDBClient configuration txbox uses for an endpoint. DynamoDB Local accepts any
 * credentials, so a local endpoint gets fixed ones unless `AWS_ACCESS_KEY_ID` is set; AWS
 * itself uses the SDK's default provider chain. Exported for the conformance target, whose
 * peers swap the endpoint.
 */
export const dynamoDbClientConfig = (
  url: string,
  options: DynamoDbConnectOptions = {},
): DynamoDBClientConfig => {
  const endpoint = endpointOf(url)
  const connectionTimeout = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS
  return {
    endpoint: url,
    region: options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    ...(isLocalEndpoint(endpoint) && process.env.AWS_ACCESS_KEY_ID === undefined
      ? { credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }
      : {}),
    requestHandler: {
      connectionTimeout,
      ...(options.poolSize === undefined
        ? {}
        : {
            httpAgent: { maxSockets: options.poolSize, keepAlive: true },
            httpsAgent: { maxSockets: options.poolSize, keepAlive: true },
          }),
    },
  }
}

/**
 * Opens the DynamoDB store at the endpoint `url` (`https://dynamodb.eu-west-1.amazonaws.com`,
 * or `http://localhost:8000` for DynamoDB Local) on a new DynamoDBClient. Building it sends
 * nothing; `serverVersion()` makes the first request. `close()` destroys the client.
 */
export const connectDynamoDb = (url: string, options: DynamoDbConnectOptions = {}): DynamoDbConnection => {
  const config = dynamoDbClientConfig(url, options)
  const client = new DynamoDBClient(config)
  return storeConnection({
    adapter: ADAPTER,
    classify: classifyDynamoDbError,
    client,
    createStore: () =>
      createDynamoDbStore({
        client,
        tableName: options.prefix,
        clock: options.clock,
        maxEventBytes: options.maxEventBytes,
        shards: options.shards,
        ttlDays: options.ttlDays,
      }),
    // DynamoDB has no version to ask for: one cheap call proves the endpoint answers.
    serverVersion: async () => {
      await client.send(new ListTablesCommand({ Limit: 1 }))
      return isLocalEndpoint(endpointOf(url))
        ? 'DynamoDB Local'
        : `Amazon DynamoDB (${await client.config.region()})`
    },
    close: async () => client.destroy(),
  })
}
