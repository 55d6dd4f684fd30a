import type { Server } from 'node:http'
import { createMemoryStore, ManualClock, OutboxRelay, type OutboxRepository } from '@txbox/core'
import { afterEach, describe, expect, it } from 'vitest'
import { listeningPort, RelayStatus, serveHttp } from '../src/index.js'

const quiet = { warn: () => {}, error: () => {} }
const servers: Server[] = []
const relays: OutboxRelay[] = []
afterEach(async () => {
  await Promise.all(relays.splice(0).map((relay) => relay.stop()))
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))))
})

const serve = async (status: RelayStatus) => {
  const server = await serveHttp(status, 0, quiet, { healthTimeoutMs: 100 })
  servers.push(server)
  return async (path: string) => {
    const response = await fetch(`http://127.0.0.1:${listeningPort(server)}${path}`)
    const text = await response.text()
    return {
      status: response.status,
      body: response.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text,
    }
  }
}

/** A running relay on the memory store whose loop parks after its first turn (the sleep never ends). */
const runningRelay = (options: { publisherOk?: boolean; outbox?: OutboxRepository<never> } = {}) => {
  const clock = new ManualClock()
  const relay = new OutboxRelay({
    outbox: options.outbox ?? (createMemoryStore({ clock: clock.now }).outbox as OutboxRepository<never>),
    publisher: {
      publish: async () => ({ duplicate: false }),
      health: () => ({
        ok: options.publisherOk ?? true,
        detail: options.publisherOk === false ? 'disconnected' : undefined,
      }),
    },
    clock: clock.now,
    healthStaleMs: 30_000,
    sleep: (_ms, signal) =>
      new Promise((resolve) => signal?.addEventListener('abort', () => resolve(), { once: true })),
    retention: { sentOlderThanDays: null, staleMinutes: null },
  })
  relays.push(relay)
  relay.start()
  return { relay, clock }
}

describe('GET /health (health with the reason), GET /live (liveness) and GET /ready (readiness)', () => {
  it('before the relay runs: /health 503 with the reason from the first second, alive, not ready', async () => {
    const status = new RelayStatus()
    status.waiting(
      'connecting to NATS',
      'NATS at nats://127.0.0.1:1 not reachable: CONNECTION_REFUSED (attempt 3)',
    )
    const get = await serve(status)
    const waiting = {
      alive: true,
      ready: false,
      phase: 'connecting to NATS',
      reason: 'NATS at nats://127.0.0.1:1 not reachable: CONNECTION_REFUSED (attempt 3)',
    }
    expect(await get('/health')).toEqual({ status: 503, body: waiting })
    expect(await get('/live')).toEqual({ status: 200, body: waiting })
    expect(await get('/ready')).toEqual({
      status: 503,
      body: {
        ready: false,
        phase: 'connecting to NATS',
        reason: 'NATS at nats://127.0.0.1:1 not reachable: CONNECTION_REFUSED (attempt 3)',
      },
    })
    expect((await get('/metrics')).status).toBe(503)
    expect((await get('/nope')).status).toBe(404)
  })

  it('running and healthy: both 200', async () => {
    const status = new RelayStatus()
    status.running(runningRelay().relay)
    const get = await serve(status)
    expect(await get('/health')).toMatchObject({
      status: 200,
      body: { alive: true, ready: true, phase: 'running' },
    })
    expect((await get('/live')).status).toBe(200)
    expect(await get('/ready')).toMatchObject({
      status: 200,
      body: { ready: true, ok: true, store: { ok: true } },
    })
  })

  it('running while NATS is down: /health 503 naming NATS, still alive (a restart would not help), not ready', async () => {
    const status = new RelayStatus()
    status.running(runningRelay({ publisherOk: false }).relay)
    const get = await serve(status)
    expect(await get('/health')).toMatchObject({
      status: 503,
      body: { alive: true, ready: false, reason: 'NATS: disconnected' },
    })
    expect(await get('/live')).toMatchObject({ status: 200, body: { alive: true, ready: false } })
    expect(await get('/ready')).toMatchObject({
      status: 503,
      body: { ready: false, reason: 'NATS: disconnected' },
    })
  })

  it('running with a loop that made no progress for healthStaleMs: liveness fails', async () => {
    const status = new RelayStatus()
    const { relay, clock } = runningRelay()
    status.running(relay)
    const get = await serve(status)
    expect((await get('/health')).status).toBe(200)
    expect((await get('/live')).status).toBe(200)
    clock.advance(30_001)
    const health = await get('/health')
    expect(health.status).toBe(503)
    expect(health.body).toMatchObject({ alive: false, reason: expect.stringMatching(/^loop: /) })
    expect((await get('/live')).status).toBe(503)
    expect((await get('/ready')).status).toBe(503)
  })

  it('a store that does not answer: /health and /ready 503 after the check timeout, /live stays 200', async () => {
    const outbox = createMemoryStore().outbox as OutboxRepository<never>
    const status = new RelayStatus()
    status.running(runningRelay({ outbox }).relay)
    // From now on the store hangs on every count.
    outbox.getCountByStatus = () => new Promise(() => {})
    const get = await serve(status)
    expect(await get('/ready')).toMatchObject({
      status: 503,
      body: { ready: false, reason: 'relay.health() did not answer within 100 ms' },
    })
    expect(await get('/health')).toMatchObject({
      status: 503,
      body: { alive: true, ready: false, reason: 'relay.health() did not answer within 100 ms' },
    })
    expect(await get('/live')).toMatchObject({ status: 200, body: { alive: true, ready: false } })
  })
})
