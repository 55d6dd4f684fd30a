/**
 * The DynamoDB Local crash of the ledger test keeps every transaction DynamoDB Local
 * answered (dynamodb-local-crash.ts says why a bare SIGKILL does not): transactions of two
 * items run at full speed from many clients, the server is crashed mid-stream, and after the
 * restart every answered transaction is there, whole.
 */
import { CreateTableCommand, GetItemCommand, TransactWriteItemsCommand } from '@aws-sdk/client-dynamodb'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CrashableDynamoDbLocal } from './dynamodb-local-crash.js'
import { sleep, waitUntil } from './harness.js'

const required = process.env.TXBOX_REQUIRE_ALL === '1'
/** The shared server's URL stands for "services.sh has installed DynamoDB Local here". */
const available = process.env.TXBOX_DYNAMODB_URL !== undefined
const TABLES = ['crash_counts', 'crash_rows'] as const
const CLIENTS = 16
const CRASHES = 4

describe.skipIf(!available && !required)('crashing DynamoDB Local', () => {
  let local: CrashableDynamoDbLocal

  beforeAll(async () => {
    local = await CrashableDynamoDbLocal.start()
    const client = local.client()
    for (const table of TABLES)
      await client.send(
        new CreateTableCommand({
          TableName: table,
          BillingMode: 'PAY_PER_REQUEST',
          AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
          KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
        }),
      )
    client.destroy()
  }, 120_000)

  afterAll(async () => {
    await local?.destroy()
  })

  it('loses no transaction it answered, and applies none by half', async () => {
    // One attempt per call: an answer is the answer to exactly the request that was sent.
    const client = local.client({ maxAttempts: 1 })
    let next = 0
    for (let crash = 0; crash < CRASHES; crash++) {
      const answered: string[] = []
      let running = true
      const writer = async (): Promise<void> => {
        while (running) {
          const id = `t${next++}`
          try {
            await client.send(
              new TransactWriteItemsCommand({
                TransactItems: [
                  {
                    Update: {
                      TableName: TABLES[0],
                      Key: { pk: { S: id } },
                      UpdateExpression: 'ADD runs :one',
                      ExpressionAttributeValues: { ':one': { N: '1' } },
                    },
                  },
                  { Put: { TableName: TABLES[1], Item: { pk: { S: id }, pad: { S: 'x'.repeat(400) } } } },
                ],
              }),
            )
            answered.push(id)
          } catch {
            // The server is down: an unanswered transaction may or may not have been applied.
            await sleep(20)
          }
        }
      }
      const writers = Array.from({ length: CLIENTS }, writer)
      // Crash mid-stream, at a different point of the stream each time.
      const crashAfter = 20 + crash * 15
      expect(await waitUntil(async () => answered.length >= crashAfter, 60_000, 5)).toBe(true)
      await local.crashAndRestart(200)
      running = false
      await Promise.all(writers)

      const missing: string[] = []
      for (const id of answered) {
        const [counted, row] = await Promise.all(
          TABLES.map((table) =>
            client.send(
              new GetItemCommand({ TableName: table, Key: { pk: { S: id } }, ConsistentRead: true }),
            ),
          ),
        )
        const runs = Number(counted?.Item?.runs?.N ?? 0)
        if (runs !== 1 || row?.Item === undefined)
          missing.push(`${id} (runs ${runs}, row ${row?.Item !== undefined})`)
      }
      expect(missing, `crash ${crash + 1}: answered transactions not kept whole`).toEqual([])
    }
    client.destroy()
  }, 240_000)
})
