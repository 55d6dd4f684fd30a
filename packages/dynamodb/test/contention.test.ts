import type { DynamoDBClient } from '@aws-sdk/client-dynamodb'
import { DeleteTableCommand } from '@aws-sdk/client-dynamodb'
import { uniqueSuffix } from '@txbox/conformance'
import { ManualClock } from '@txbox/core'
import { afterAll, describe, expect, it } from 'vitest'
import { localClient } from '../src/conformance-target.js'
import { createDynamoStore } from '../src/index.js'

const url = process.env.TXBOX_DYNAMODB_URL
const reason = 'TXBOX_DYNAMODB_URL is not set (bash scripts/services.sh up dynamodb)'
if (!url && process.env.TXBOX_REQUIRE_ALL === '1') throw new Error(`TXBOX_REQUIRE_ALL=1 but ${reason}`)

const EVENTS = Number(process.env.TXBOX_DYNAMODB_CONTENTION_EVENTS ?? 5_000)
const CLAIMERS = 8

describe.skipIf(!url)(`claim under contention${url ? '' : ` (skipped: ${reason})`}`, () => {
  const clients: DynamoDBClient[] = []
  const tableName = `t_${uniqueSuffix()}`
  afterAll(async () => {
    await clients[0]?.send(new DeleteTableCommand({ TableName: tableName })).catch(() => {})
    for (const client of clients) client.destroy()
  })

  it(`${CLAIMERS} claimers on separate clients over ${EVENTS} events: each event claimed exactly once`, async () => {
    const clock = new ManualClock()
    for (let index = 0; index <= CLAIMERS; index++) clients.push(localClient(url ?? ''))
    const producer = createDynamoStore({ client: clients[0]!, tableName, clock: clock.now })
    await producer.migrate()
    const ids = Array.from({ length: EVENTS }, (_, index) => `evt-${index}`)
    const enqueueStarted = performance.now()
    for (let start = 0; start < ids.length; start += 100) {
      await producer.outbox.findOrCreateMany(
        ids.slice(start, start + 100).map((eventId) => ({ eventId, subject: 'load.test', payload: eventId })),
      )
    }
    const enqueueMs = performance.now() - enqueueStarted

    const owner = new Map<string, string>()
    const duplicates: string[] = []
    let calls = 0
    const claimStarted = performance.now()
    await Promise.all(
      Array.from({ length: CLAIMERS }, async (_, index) => {
        const workerId = `worker-${index}`
        const store = createDynamoStore({ client: clients[index + 1]!, tableName, clock: clock.now })
        for (;;) {
          const claimed = await store.outbox.claim({ limit: 50, leaseMs: 600_000, workerId })
          calls++
          if (claimed.length === 0) return
          for (const event of claimed) {
            if (owner.has(event.eventId)) duplicates.push(event.eventId)
            owner.set(event.eventId, workerId)
          }
        }
      }),
    )
    const claimMs = performance.now() - claimStarted
    console.log(
      `contention: enqueued ${EVENTS} in ${enqueueMs.toFixed(0)} ms; ${CLAIMERS} claimers took them in ` +
        `${claimMs.toFixed(0)} ms (${((EVENTS / claimMs) * 1000).toFixed(0)} events/s, ${calls} claim calls)`,
    )
    expect(duplicates).toEqual([])
    expect(owner.size).toBe(EVENTS)
    const counts = await producer.outbox.getCountByStatus()
    expect(counts).toEqual({ pending: 0, publishing: EVENTS, sent: 0, failed: 0 })
  }, 900_000)
})
