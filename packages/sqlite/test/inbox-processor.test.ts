import { type InboxMessage, InboxProcessor, type InboxSource } from '@txbox/core'
import Database from 'better-sqlite3'
import { afterAll, describe, expect, it } from 'vitest'
import { openStore, tempDirectory } from './helpers.js'

const temp = tempDirectory()
afterAll(() => temp.cleanup())

/** A JetStream-like source fed by the test; records how each message was settled. */
const feed = () => {
  const queue: InboxMessage[] = []
  const settled: string[] = []
  let wake: (() => void) | undefined
  let stopped = false
  const source: InboxSource = {
    subscribe: async () => ({
      async *[Symbol.asyncIterator]() {
        while (!stopped) {
          const next = queue.shift()
          if (next !== undefined) {
            yield next
            continue
          }
          await new Promise<void>((resolve) => {
            wake = resolve
          })
        }
      },
      stop: () => {
        stopped = true
        wake?.()
      },
    }),
  }
  const deliver = (eventId: string, deliveryCount: number) => {
    queue.push({
      eventId,
      subject: 'orders.created',
      payload: JSON.stringify({ orderId: eventId }),
      headers: {},
      storedHeaders: undefined,
      stream: 'ORDERS',
      streamSeq: Number(eventId.replace(/\D/g, '')),
      deliveryCount,
      ack: () => {
        settled.push(`ack ${eventId}#${deliveryCount}`)
      },
      nak: () => {
        settled.push(`nak ${eventId}#${deliveryCount}`)
      },
      term: () => {
        settled.push(`term ${eventId}#${deliveryCount}`)
      },
    })
    wake?.()
  }
  return { source, settled, deliver }
}

describe('InboxProcessor built with the SQLite store', () => {
  it('runs the handler and the processed mark in one store.transaction: one side effect per event, redeliveries included, at concurrency 3', async () => {
    const file = temp.file('processor.db')
    const { db, store } = await openStore(file)
    db.exec('CREATE TABLE shipments (order_id TEXT PRIMARY KEY)')
    const { source, settled, deliver } = feed()
    let crashOnce = true
    const processor = new InboxProcessor({
      store,
      source,
      concurrency: 3,
      workerId: 'w',
      handler: async ({ event, tx }) => {
        tx.prepare('INSERT INTO shipments (order_id) VALUES (?)').run(event.eventId)
        await new Promise((resolve) => setTimeout(resolve, 2))
        if (event.eventId === 'order-2' && crashOnce) {
          crashOnce = false
          throw new Error('carrier API down')
        }
      },
    })
    await processor.start()
    for (const id of ['order-1', 'order-2', 'order-3']) deliver(id, 1)
    // JetStream redelivers: duplicates of a handled event, and the failed one again.
    deliver('order-1', 2)
    deliver('order-3', 2)
    const deadline = Date.now() + 10_000
    while (!settled.includes('nak order-2#1') && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10))
    deliver('order-2', 2)
    while (settled.length < 6 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    await processor.stop()

    expect([...settled].sort()).toEqual([
      'ack order-1#1',
      'ack order-1#2',
      'ack order-2#2',
      'ack order-3#1',
      'ack order-3#2',
      'nak order-2#1',
    ])
    const reader = new Database(file, { readonly: true })
    const shipped = reader.prepare('SELECT order_id FROM shipments ORDER BY order_id').pluck().all()
    // The crashed delivery's insert rolled back with its transaction; the redelivery shipped once.
    expect(shipped).toEqual(['order-1', 'order-2', 'order-3'])
    for (const id of ['order-1', 'order-2', 'order-3']) expect(await store.inbox.isProcessed(id)).toBe(true)
    reader.close()
    db.close()
  })
})
