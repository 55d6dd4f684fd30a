import {
  PutItemCommand,
  TransactionCanceledException,
  TransactWriteItemsCommand,
} from '@aws-sdk/client-dynamodb'
import { StorageError } from '@txbox/core'
import { describe, expect, it } from 'vitest'
import { DynamoDbFailure } from '../src/errors.js'
import { classifyDynamoDbError, connectDynamoDb, createDynamoDbStore, MAX_ITEM_BYTES } from '../src/index.js'
import { DEAD_ENDPOINT, noServer, skipReason, tablesOnServer } from './helpers.js'

/** A driver error as the SDK builds it: an Error whose `name` is the DynamoDB exception. */
const sdkError = (name: string, message = name, extra: Record<string, unknown> = {}) =>
  Object.assign(new Error(message), { name, $metadata: {} }, extra)

/** What `error` makes of a real call: the rejection, for its classification. */
const failureOf = async (call: Promise<unknown>) => {
  const error = await call.then(
    () => undefined,
    (caught: unknown) => caught,
  )
  expect(error).toBeDefined()
  return { error, failure: classifyDynamoDbError(error) }
}

describe('classifyDynamoDbError on constructed driver errors', () => {
  it.each([
    ['ProvisionedThroughputExceededException', 'throttled', true],
    ['ThrottlingException', 'throttled', true],
    ['RequestLimitExceeded', 'throttled', true],
    ['LimitExceededException', 'throttled', true],
    ['TransactionConflictException', 'conflict', true],
    ['TransactionInProgressException', 'conflict', true],
    ['ResourceInUseException', 'conflict', true],
    ['ConditionalCheckFailedException', 'conflict', false],
    ['AccessDeniedException', 'permission', false],
    ['UnrecognizedClientException', 'permission', false],
    ['ExpiredTokenException', 'permission', false],
    ['CredentialsProviderError', 'permission', false],
    ['InternalServerError', 'unavailable', true],
    ['ServiceUnavailable', 'unavailable', true],
    ['TimeoutError', 'timeout', true],
    ['RequestTimeout', 'timeout', true],
    ['ItemCollectionSizeLimitExceededException', 'limit', false],
    ['ValidationException', 'unknown', false],
    ['SomethingNew', 'unknown', false],
  ] as const)('%s is %s (retryable: %s)', (name, reason, retryable) => {
    expect(classifyDynamoDbError(sdkError(name))).toMatchObject({ reason, retryable })
  })

  it('tells socket failures by their code, also inside an AggregateError', () => {
    const refused = Object.assign(
      new AggregateError([Object.assign(new Error('x'), { code: 'ECONNREFUSED' })], ''),
      {
        code: undefined,
      },
    )
    expect(classifyDynamoDbError(refused)).toMatchObject({ reason: 'unavailable', retryable: true })
    expect(classifyDynamoDbError(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }))).toEqual(
      {
        reason: 'unavailable',
        retryable: true,
        detail: 'socket hang up (ECONNRESET)',
      },
    )
    expect(classifyDynamoDbError(Object.assign(new Error('t'), { code: 'ETIMEDOUT' }))).toMatchObject({
      reason: 'timeout',
      retryable: true,
    })
  })

  it('a cancelled transaction is a conflict, retryable only for a transient reason, its reasons in the detail', () => {
    const cancelled = (...codes: string[]) =>
      sdkError('TransactionCanceledException', 'Transaction cancelled', {
        CancellationReasons: codes.map((Code) => ({ Code })),
      })
    expect(classifyDynamoDbError(cancelled('None', 'ConditionalCheckFailed'))).toEqual({
      reason: 'conflict',
      retryable: false,
      detail: 'Transaction cancelled (cancellation reasons: None, ConditionalCheckFailed)',
    })
    expect(classifyDynamoDbError(cancelled('TransactionConflict', 'None'))).toMatchObject({
      reason: 'conflict',
      retryable: true,
    })
  })

  it("keeps the adapter's own failures as they were raised, and anything else is unknown", () => {
    expect(classifyDynamoDbError(new DynamoDbFailure('schema', false, 'no index'))).toEqual({
      reason: 'schema',
      retryable: false,
    })
    expect(classifyDynamoDbError(new TypeError('a bug'))).toEqual({ reason: 'unknown', retryable: false })
    expect(classifyDynamoDbError('a string')).toEqual({ reason: 'unknown', retryable: false })
  })
})

describe('classified errors from an unreachable endpoint', () => {
  it('every repository call is a retryable "unavailable" StorageError with the socket code', async () => {
    const connection = connectDynamoDb(DEAD_ENDPOINT, { prefix: 'nothing_here' })
    try {
      const error = await connection.store.outbox.get('x').catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(StorageError)
      expect(error).toMatchObject({ operation: 'outbox.get', reason: 'unavailable', retryable: true })
      expect((error as Error).message).toMatch(/ECONNREFUSED/)
      await expect(connection.store.inbox.isProcessed('x')).rejects.toMatchObject({ reason: 'unavailable' })
      await expect(connection.store.migrate()).rejects.toMatchObject({
        operation: 'migrate',
        reason: 'unavailable',
      })
    } finally {
      await connection.close()
    }
  })
})

describe.skipIf(noServer)(
  `classified errors from DynamoDB Local${noServer ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    const server = tablesOnServer()

    it('a table that does not exist is "schema", not retryable, and says to run migrate()', async () => {
      const store = createDynamoDbStore({ client: server.client(), tableName: server.tableName() })
      const error = await store.outbox
        .claim({ leaseMs: 1_000, workerId: 'w' })
        .catch((caught: unknown) => caught)
      expect(error).toMatchObject({
        name: 'StorageError',
        operation: 'outbox.claim',
        reason: 'schema',
        retryable: false,
      })
      expect((error as Error).message).toMatch(
        /^\[txbox\] \[dynamodb\] outbox\.claim failed: .*\(did you run migrate\(\)\?\)$/,
      )
      await expect(store.inbox.markAsFailed('x', 'm')).rejects.toMatchObject({ reason: 'schema' })
    })

    it('a false condition and a cancelled transaction are conflicts; an item over 400 KB is "limit"', async () => {
      const client = server.client()
      const tableName = server.tableName()
      await createDynamoDbStore({ client, tableName }).migrate()
      const item = { pk: { S: 'app#1' } }
      await client.send(new PutItemCommand({ TableName: tableName, Item: item }))
      const conditional = await failureOf(
        client.send(
          new PutItemCommand({
            TableName: tableName,
            Item: item,
            ConditionExpression: 'attribute_not_exists(pk)',
          }),
        ),
      )
      expect(conditional.failure).toEqual({ reason: 'conflict', retryable: false })
      const cancelled = await failureOf(
        client.send(
          new TransactWriteItemsCommand({
            TransactItems: [
              { Put: { TableName: tableName, Item: { pk: { S: 'app#2' } } } },
              { Put: { TableName: tableName, Item: item, ConditionExpression: 'attribute_not_exists(pk)' } },
            ],
          }),
        ),
      )
      expect(cancelled.error).toBeInstanceOf(TransactionCanceledException)
      expect(cancelled.failure).toMatchObject({ reason: 'conflict', retryable: false })
      expect(cancelled.failure.detail).toMatch(/cancellation reasons: None, ConditionalCheckFailed/)
      const tooLarge = await failureOf(
        client.send(
          new PutItemCommand({
            TableName: tableName,
            Item: { pk: { S: 'app#3' }, blob: { S: 'x'.repeat(MAX_ITEM_BYTES + 1) } },
          }),
        ),
      )
      expect(tooLarge.failure).toEqual({ reason: 'limit', retryable: false })
    })
  },
)
