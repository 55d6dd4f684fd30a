import { randomUUID } from 'node:crypto'
import { StorageError, type StorageErrorReason } from '@txbox/core'
import { MongoClient, MongoNetworkTimeoutError, MongoServerError } from 'mongodb'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ContentionError, classifyMongoDbError } from '../src/errors.js'
import { createMongoDbStore } from '../src/index.js'

const url = process.env.TXBOX_MONGODB_URL
if (!url && process.env.TXBOX_REQUIRE_ALL === '1') {
  throw new Error(
    'TXBOX_REQUIRE_ALL=1 but TXBOX_MONGODB_URL is not set: start it with scripts/services.sh up mongodb',
  )
}

const serverError = (code: number, codeName: string, errorLabels: string[] = []): MongoServerError =>
  new MongoServerError({ code, codeName, errmsg: `${codeName} happened`, errorLabels })

describe('classifyMongoDbError on constructed driver errors', () => {
  const cases: [string, unknown, StorageErrorReason, boolean][] = [
    ['WriteConflict (112)', serverError(112, 'WriteConflict'), 'conflict', true],
    ['NoSuchTransaction (251)', serverError(251, 'NoSuchTransaction'), 'conflict', true],
    [
      'any error labelled TransientTransactionError',
      serverError(9999, 'Whatever', ['TransientTransactionError']),
      'conflict',
      true,
    ],
    ['MaxTimeMSExpired (50)', serverError(50, 'MaxTimeMSExpired'), 'timeout', true],
    ['a network timeout', new MongoNetworkTimeoutError('socket timed out'), 'timeout', true],
    ['NotWritablePrimary (10107)', serverError(10107, 'NotWritablePrimary'), 'unavailable', true],
    ['ShutdownInProgress (91)', serverError(91, 'ShutdownInProgress'), 'unavailable', true],
    [
      'IngressRequestRateLimitExceeded (462)',
      serverError(462, 'IngressRequestRateLimitExceeded'),
      'throttled',
      true,
    ],
    [
      'labelled SystemOverloadedError',
      serverError(9998, 'Overloaded', ['SystemOverloadedError']),
      'throttled',
      true,
    ],
    ['Unauthorized (13)', serverError(13, 'Unauthorized'), 'permission', false],
    ['AuthenticationFailed (18)', serverError(18, 'AuthenticationFailed'), 'permission', false],
    ['BSONObjectTooLarge (10334)', serverError(10334, 'BSONObjectTooLarge'), 'limit', false],
    ['IndexNotFound (27)', serverError(27, 'IndexNotFound'), 'schema', false],
    ['an unexpected duplicate key (11000)', serverError(11000, 'DuplicateKey'), 'unknown', false],
    ['a read-decide-write loop that kept losing', new ContentionError('kept changing'), 'conflict', true],
    ['a plain Error', new Error('bug'), 'unknown', false],
    ['a thrown string', 'nope', 'unknown', false],
  ]
  it.each(cases)('%s', (_, error, reason, retryable) => {
    expect(classifyMongoDbError(error)).toMatchObject({ reason, retryable })
  })

  it('keeps the server code in the detail, and says to migrate for a missing collection', () => {
    expect(classifyMongoDbError(serverError(112, 'WriteConflict')).detail).toBe(
      'WriteConflict happened (code 112 WriteConflict)',
    )
    expect(classifyMongoDbError(serverError(26, 'NamespaceNotFound')).detail).toMatch(
      /\(code 26 NamespaceNotFound\) \(did you run migrate\(\)\?\)$/,
    )
  })
})

describe('classifyMongoDbError without a server', () => {
  it('an unreachable server is unavailable and retryable, through the repository', async () => {
    const client = new MongoClient('mongodb://127.0.0.1:1/txbox', { serverSelectionTimeoutMS: 200 })
    try {
      const store = createMongoDbStore({ db: client.db(), collectionPrefix: 'nowhere_' })
      const error = await store.outbox.findPending().catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(StorageError)
      expect(error).toMatchObject({ reason: 'unavailable', retryable: true, operation: 'outbox.findPending' })
    } finally {
      await client.close()
    }
  })
})

describe.skipIf(!url)('classifyMongoDbError on errors of the real server (TXBOX_MONGODB_URL)', () => {
  let client: MongoClient

  beforeAll(async () => {
    client = new MongoClient(url ?? '')
    await client.connect()
  })

  afterAll(async () => {
    await client?.close()
  })

  it('a missing collection is schema, with the hint to migrate', async () => {
    const error = await client
      .db()
      .collection(`t_missing_${randomUUID().slice(0, 8)}`)
      .listIndexes()
      .toArray()
      .catch((caught: unknown) => caught)
    expect(classifyMongoDbError(error)).toMatchObject({
      reason: 'schema',
      retryable: false,
      detail: expect.stringMatching(/did you run migrate\(\)/),
    })
  })

  it('a closed client is unavailable and not retryable, through the repository', async () => {
    const closing = new MongoClient(url ?? '')
    await closing.connect()
    const store = createMongoDbStore({
      db: closing.db(),
      collectionPrefix: `t_closed_${randomUUID().slice(0, 8)}_`,
    })
    await closing.close()
    const error = await store.inbox.get('x').catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(StorageError)
    expect(error).toMatchObject({ reason: 'unavailable', retryable: false, operation: 'inbox.get' })
  })

  it('an unexpected duplicate key of the server is unknown', async () => {
    const collection = client.db().collection<{ _id: string }>(`t_dup_${randomUUID().slice(0, 8)}`)
    try {
      await collection.insertOne({ _id: 'same' })
      const error = await collection.insertOne({ _id: 'same' }).catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(MongoServerError)
      expect(classifyMongoDbError(error)).toMatchObject({ reason: 'unknown', retryable: false })
    } finally {
      await collection.drop()
    }
  })
})
