/**
 * A JetStream stream deleted and re-created under its name restarts its sequence at 1. The
 * inbox must still run the handler once for every new event: with `Nats-Msg-Id` (the id
 * alone is the identity, a reused `(stream, streamSeq)` merges nothing) and without it (the
 * fallback id includes the stream's creation time). End to end: a real NATS server, the
 * JetStream inbox source, the InboxProcessor and a real store, the processor running
 * through the deletion.
 */
import { InboxProcessor } from '@txbox/core'
import { createJetStreamInboxSource, ensureDurableConsumer, ensureStream } from '@txbox/core/nats'
import { connect, type JetStreamManager, type NatsConnection, headers as natsHeaders } from 'nats'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { waitUntil } from './harness.js'
import { type OpenedPair, openPostgres, openRedis, openSqlite } from './ledger-stores.js'

const natsUrl = process.env.TXBOX_NATS_URL
const postgresUrl = process.env.TXBOX_POSTGRES_URL
const redisUrl = process.env.TXBOX_REDIS_URL
const required = process.env.TXBOX_REQUIRE_ALL === '1'

/** Events per batch with `Nats-Msg-Id`, and without it. */
const WITH_ID = 60
const WITHOUT_ID = 20
const DRAIN_MS = 90_000

const stores: { name: string; lacking: string[]; open: () => Promise<OpenedPair<never>> }[] = [
  { name: 'sqlite', lacking: [], open: () => openSqlite() as Promise<OpenedPair<never>> },
  {
    name: 'postgres',
    lacking: postgresUrl ? [] : ['TXBOX_POSTGRES_URL'],
    open: () => openPostgres(postgresUrl as string) as Promise<OpenedPair<never>>,
  },
  {
    name: 'redis',
    lacking: redisUrl ? [] : ['TXBOX_REDIS_URL'],
    open: () => openRedis(redisUrl as string) as Promise<OpenedPair<never>>,
  },
]

describe('inbox across a JetStream stream deleted and re-created under its name', () => {
  let nc: NatsConnection
  let jsm: JetStreamManager

  beforeAll(async () => {
    if (!natsUrl) return
    nc = await connect({ servers: natsUrl })
    jsm = await nc.jetstreamManager()
  })

  afterAll(async () => {
    await nc?.close()
  })

  for (const store of stores) {
    const lacking = natsUrl ? store.lacking : ['TXBOX_NATS_URL', ...store.lacking]
    it.skipIf(lacking.length > 0 && !required)(
      `${store.name}: every new event at a reused sequence is handled exactly once${lacking.length > 0 ? ` (skipped: ${lacking.join(', ')} not set)` : ''}`,
      async () => {
        const suffix = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`
        const stream = `RECREATE_${store.name.toUpperCase()}_${suffix.toUpperCase()}`
        const subject = `recreate${suffix}`
        const create = async () => {
          await ensureStream(jsm, { name: stream, subjects: [`${subject}.>`] })
          await ensureDurableConsumer(jsm, { stream, durable: 'inbox', ackWaitMs: 5_000 })
        }
        await create()
        const opened = await store.open()
        const { pair } = opened
        // Every handler run, by what was published (the payload), whatever id it got.
        const runs = new Map<string, number>()
        const processor = new InboxProcessor<never>({
          inbox: pair.inbox,
          // Short pulls: the re-created consumer is found after two missed heartbeats (2 s).
          source: createJetStreamInboxSource({
            connection: nc,
            stream,
            durable: 'inbox',
            pullExpiresMs: 2_000,
          }),
          transaction: pair.transaction,
          leaseMs: 10_000,
          handler: async ({ event, tx }) => {
            await pair.recordInLedger(tx, event.eventId)
            runs.set(event.payload, (runs.get(event.payload) ?? 0) + 1)
          },
        })
        const publish = async (batch: string): Promise<string[]> => {
          const js = nc.jetstream()
          const payloads: string[] = []
          for (let n = 0; n < WITH_ID + WITHOUT_ID; n++) {
            const payload = JSON.stringify({ batch, n })
            payloads.push(payload)
            const withId = n < WITH_ID
            const ack = await js.publish(`${subject}.orders`, payload, {
              ...(withId ? { msgID: `${store.name}-${batch}-${n}` } : {}),
              headers: natsHeaders(),
            })
            expect(ack.duplicate).toBe(false)
          }
          return payloads
        }
        const handled = (payloads: string[]) => async () => payloads.every((p) => runs.has(p))
        try {
          await processor.start()
          const before = await publish('before')
          expect(await waitUntil(handled(before), DRAIN_MS), 'the first stream is drained').toBe(true)

          await jsm.streams.delete(stream)
          await create()
          const recreatedAt = Date.now()
          const after = await publish('after')
          expect((await jsm.streams.info(stream)).state.first_seq, 'sequences restarted').toBe(1)
          const drained = await waitUntil(handled(after), DRAIN_MS)
          console.info(`[${store.name}] re-created stream drained in ${Date.now() - recreatedAt} ms`)
          const missing = after.filter((p) => !runs.has(p))
          expect(missing, `new events never handled (${missing.length})`).toEqual([])
          expect(drained).toBe(true)

          // Exactly once: each published event ran its handler once, and the store's own
          // ledger (written in the handler's transaction) holds one effect per event id.
          expect([...runs.entries()].filter(([, count]) => count !== 1)).toEqual([])
          expect(runs.size).toBe(before.length + after.length)
          const ledger = await pair.ledger()
          expect(ledger.size).toBe(before.length + after.length)
          expect([...ledger.entries()].filter(([, count]) => count !== 1)).toEqual([])
          for (let n = 0; n < WITH_ID; n++) {
            expect(ledger.get(`${store.name}-after-${n}`), `after-${n}`).toBe(1)
          }
          // The fallback ids of the two streams differ by the stream's creation time.
          const fallback = [...ledger.keys()].filter((id) => id.startsWith(`${stream}:`))
          expect(fallback).toHaveLength(2 * WITHOUT_ID)
          expect(new Set(fallback.map((id) => id.slice(0, id.lastIndexOf(':')))).size).toBe(2)
        } finally {
          await processor.stop()
          await jsm.streams.delete(stream).catch(() => false)
          await opened.close()
        }
      },
    )
  }
})
