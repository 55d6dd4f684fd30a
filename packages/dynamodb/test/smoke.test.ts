import { ManualClock } from '@txbox/core'
import { describe, expect, it } from 'vitest'
import { localClient } from '../src/conformance-target.js'
import { createDynamoStore } from '../src/index.js'

const url = process.env.TXBOX_DYNAMODB_URL
describe.skipIf(!url)('smoke', () => {
  it('round trips', async () => {
    const client = localClient(url ?? '')
    const clock = new ManualClock()
    const store = createDynamoStore({ client, tableName: `smoke_${Date.now()}`, clock: clock.now })
    await store.migrate()
    await store.migrate()
    const payload = 'a\u0000b😀\u0001"\\'
    const e = await store.outbox.findOrCreate({ eventId: 'x\u0000y', subject: 's', payload, headers: '' })
    expect(e.payload).toBe(payload)
    const got = await store.outbox.get('x\u0000y')
    expect(got?.payload).toBe(payload)
    expect(got?.headers).toBe('')
    const pend = await store.outbox.findPending()
    expect(pend.map((p) => p.eventId)).toEqual(['x\u0000y'])
    const claimed = await store.outbox.claim({ limit: 5, leaseMs: 1000, workerId: 'w' })
    expect(claimed.length).toBe(1)
    console.log(await store.outbox.getCountByStatus())
    await store.outbox.markManyAsSent(['x\u0000y'], { workerId: 'w' })
    clock.advance(86_400_000 * 2)
    expect(await store.outbox.cleanup(1)).toBe(1)
    const r = await store.inbox.claim({ eventId: 'i1', subject: 's', payload: '', stream: 'S', streamSeq: 1 }, { leaseMs: 10, workerId: 'w' })
    expect(r.shouldProcess).toBe(true)
    const r2 = await store.inbox.claim({ eventId: 'i2', subject: 's', payload: '', stream: 'S', streamSeq: 1 }, { leaseMs: 10, workerId: 'w' })
    expect(r2.shouldProcess).toBe(false)
    expect(r2.event.eventId).toBe('i1')
    expect(r2.event.deliveries).toBe(2)
  })
})
