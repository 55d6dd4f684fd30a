import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, type JetStreamManager, type NatsConnection } from 'nats'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createMemoryStore,
  type MemoryStore,
  OutboxRelay,
  silentLogger,
  type TxboxLogger,
} from '../src/index.js'
import { createJetStreamPublisher, ensureStream } from '../src/nats/index.js'

const url = process.env.TXBOX_NATS_URL
const required = process.env.TXBOX_REQUIRE_ALL === '1'
if (!url && required) throw new Error('TXBOX_REQUIRE_ALL=1 but TXBOX_NATS_URL is not set')

const suffix = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`
const MiB = 1_048_576

const enqueue = async (
  store: MemoryStore,
  subject: string,
  ids: string[],
  payload = (id: string) => `payload of ${id}`,
) => {
  await store.outbox.findOrCreateMany(ids.map((eventId) => ({ eventId, subject, payload: payload(eventId) })))
}

const waitFor = async (what: string, condition: () => Promise<boolean> | boolean, timeoutMs: number) => {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

describe.skipIf(!url)(
  `relay publish path against JetStream (${url ? 'TXBOX_NATS_URL' : 'skipped: TXBOX_NATS_URL not set'})`,
  () => {
    const stream = `TXBOX_RELAYF_${suffix.toUpperCase()}`
    const subject = `txboxrelayf${suffix}.orders`
    let nc: NatsConnection
    let jsm: JetStreamManager

    beforeAll(async () => {
      nc = await connect({ servers: url as string })
      jsm = await nc.jetstreamManager()
      await ensureStream(jsm, {
        name: stream,
        subjects: [`txboxrelayf${suffix}.>`],
        duplicateWindowMs: 60_000,
      })
    })

    afterAll(async () => {
      await jsm?.streams.delete(stream).catch(() => false)
      await nc?.close()
    })

    const relayFor = (store: MemoryStore, options: { maxEventBytes?: number } = {}) =>
      new OutboxRelay({
        outbox: store.outbox,
        publisher: createJetStreamPublisher({ connection: nc, timeoutMs: 5_000 }),
        logger: silentLogger,
        claimRampUp: false,
        ...options,
      })

    it('dead-letters an event whose Nats-Msg-Id a foreign message already holds, and marks a genuine republish sent', async () => {
      // Someone else published with our id inside the duplicate window.
      const foreign = await nc.jetstream().publish(subject, new TextEncoder().encode('foreign bytes'), {
        msgID: `x-${suffix}`,
      })
      // A relay crashed after publishing this one and before marking it.
      const store = createMemoryStore()
      await enqueue(store, subject, [`x-${suffix}`, `y-${suffix}`])
      const earlier = await createJetStreamPublisher({ connection: nc }).publish({
        ...(await store.outbox.get(`y-${suffix}`))!,
      })
      expect(earlier.duplicate).toBe(false)

      const relay = relayFor(store)
      expect(await relay.runOnce()).toBe(2)

      const conflicted = await store.outbox.get(`x-${suffix}`)
      expect(conflicted?.status).toBe('failed')
      expect(conflicted?.errorMessage).toContain('NOT delivered')
      expect(conflicted?.errorMessage).toContain(`at seq ${foreign.seq}`)
      expect(conflicted?.errorMessage).toContain('payload is 13 bytes')
      expect((await store.outbox.get(`y-${suffix}`))?.status).toBe('sent')
      expect(relay.counters()).toMatchObject({ published: 1, duplicates: 2, duplicateConflicts: 1, dead: 1 })
      // The stream still has exactly the two original messages: nothing of ours was added.
      expect((await jsm.streams.info(stream)).state.messages).toBe(2)
      const stored = await jsm.streams.getMessage(stream, { seq: foreign.seq })
      expect(new TextDecoder().decode(stored.data)).toBe('foreign bytes')
    })

    it('counts a duplicate whose stored message is gone as unverified, and marks it sent', async () => {
      const store = createMemoryStore()
      const id = `z-${suffix}`
      await enqueue(store, subject, [id])
      const first = await createJetStreamPublisher({ connection: nc }).publish({
        ...(await store.outbox.get(id))!,
      })
      // The message is deleted, but its id stays in the duplicate window.
      await jsm.streams.deleteMessage(stream, first.seq as number)
      const relay = relayFor(store)
      await relay.runOnce()
      expect((await store.outbox.get(id))?.status).toBe('sent')
      expect(relay.counters()).toMatchObject({
        duplicates: 1,
        duplicatesUnverified: 1,
        duplicateConflicts: 0,
      })
    })

    it("dead-letters at once, without a retry, an event over the server's max_payload", async () => {
      const maxPayload = nc.info?.max_payload ?? 0
      expect(maxPayload).toBeGreaterThan(0)
      const store = createMemoryStore({ maxEventBytes: maxPayload + MiB })
      const id = `big-${suffix}`
      await enqueue(store, subject, [id, `small-${suffix}`], (eventId) =>
        eventId === id ? 'b'.repeat(maxPayload) : 'small',
      )
      const relay = relayFor(store, { maxEventBytes: maxPayload + MiB })
      await relay.runOnce()
      const big = await store.outbox.get(id)
      expect(big).toMatchObject({ status: 'failed', retryCount: 1 })
      expect(big?.errorMessage).toContain(`over the server's max_payload of ${maxPayload}`)
      expect((await store.outbox.get(`small-${suffix}`))?.status).toBe('sent')
      expect((await relay.metrics()).deadLettered).toEqual({ 'too-large': 1 })
    })
  },
)

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      )
    })
  })

const natsServerBinary = process.env.TXBOX_NATS_SERVER_BIN ?? 'nats-server'

describe.skipIf(!url)('relay health while the broker hangs (a private nats-server, SIGSTOPped)', () => {
  let server: ChildProcess | undefined
  let storeDir: string
  let nc: NatsConnection | undefined
  let serverUrl: string

  beforeAll(async () => {
    const port = await freePort()
    storeDir = mkdtempSync(join(tmpdir(), 'txbox-nats-hang-'))
    serverUrl = `nats://127.0.0.1:${port}`
    server = spawn(natsServerBinary, ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', storeDir], {
      stdio: 'ignore',
    })
    await waitFor(
      'the private nats-server',
      async () => {
        try {
          nc = await connect({ servers: serverUrl, maxReconnectAttempts: -1, reconnectTimeWait: 100 })
          return true
        } catch {
          return false
        }
      },
      15_000,
    )
  })

  afterAll(async () => {
    server?.kill('SIGCONT')
    await nc?.close().catch(() => undefined)
    server?.kill('SIGKILL')
    rmSync(storeDir, { recursive: true, force: true })
  })

  it('turns health not-ok within one publish timeout, logs the failures, and recovers after SIGCONT', async () => {
    const connection = nc as NatsConnection
    const subject = `hang${suffix}.orders`
    await ensureStream(await connection.jetstreamManager(), {
      name: `HANG_${suffix.toUpperCase()}`,
      subjects: [subject],
    })
    const lines: { message: string; fields: Record<string, unknown> }[] = []
    const logger: TxboxLogger = {
      warn: (message, fields = {}) => lines.push({ message, fields }),
      error: (message, fields = {}) => lines.push({ message, fields }),
    }
    const timeoutMs = 1_000
    const pollIntervalMs = 50
    const store = createMemoryStore()
    const relay = new OutboxRelay({
      outbox: store.outbox,
      publisher: createJetStreamPublisher({ connection, timeoutMs }),
      pollIntervalMs,
      backoff: { baseMs: 100, maxMs: 400 },
      maxAttempts: 1_000,
      logger,
    })
    relay.start()
    try {
      await enqueue(store, subject, ['before-0', 'before-1'])
      await waitFor(
        'the first events sent',
        async () => (await store.outbox.getCountByStatus()).sent === 2,
        15_000,
      )
      expect((await relay.health()).ok).toBe(true)

      server?.kill('SIGSTOP')
      const stoppedAt = Date.now()
      await enqueue(store, subject, ['during-0', 'during-1', 'during-2'])
      await waitFor('health to turn not-ok', async () => !(await relay.health()).ok, 15_000)
      const tookMs = Date.now() - stoppedAt
      // One publish timeout, plus the poll that picks the events up, plus scheduling slack on
      // a loaded 2-core machine.
      expect(tookMs).toBeLessThan(timeoutMs + pollIntervalMs + 1_000)
      const report = await relay.health()
      expect(report.publisher.ok).toBe(false)
      expect(report.publisher.detail).toMatch(
        /publishes timed out since .* and none succeeded since; last: .*no PubAck/,
      )
      expect(report.loop.ok).toBe(true)
      const failuresLogged = lines.filter((line) => line.message.startsWith('publishes failed'))
      expect(failuresLogged.length).toBeGreaterThanOrEqual(1)
      expect(failuresLogged[0]?.fields.byReason).toMatchObject({ timeout: expect.any(Number) })
      expect((await relay.metrics()).publishFailures.timeout).toBeGreaterThanOrEqual(1)

      server?.kill('SIGCONT')
      await waitFor(
        'every event sent after SIGCONT',
        async () => (await store.outbox.getCountByStatus()).sent === 5,
        20_000,
      )
      expect((await relay.health()).ok).toBe(true)
      expect(lines.some((line) => line.message.startsWith('publishing works again'))).toBe(true)
    } finally {
      server?.kill('SIGCONT')
      await relay.stop()
    }
  }, 60_000)
})
