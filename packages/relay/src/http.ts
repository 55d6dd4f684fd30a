import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  createPrometheusExporter,
  type HealthReport,
  messageOf,
  type PrometheusExporter,
  type TxboxLogger,
} from '@txbox/core'
import type { RelayStatus } from './status.js'

/** A health check that takes longer (a store that does not answer) counts as not ready. */
export const HEALTH_TIMEOUT_MS = 2_000

const withTimeout = async (
  check: Promise<HealthReport>,
  timeoutMs: number,
): Promise<HealthReport | undefined> => {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      check,
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), timeoutMs)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

const firstProblem = (report: HealthReport): string =>
  [
    report.store.ok ? undefined : `store: ${report.store.detail ?? 'not ok'}`,
    report.publisher.ok ? undefined : `NATS: ${report.publisher.detail ?? 'not ok'}`,
    report.loop.ok ? undefined : `loop: ${report.loop.detail ?? 'not ok'}`,
  ]
    .filter((part) => part !== undefined)
    .join('; ')

/**
 * GET /health is the relay's health with the reason: 503 from the first second until the
 * store and NATS answered and the loop runs, and afterwards whenever `relay.health()` is not
 * ok (the store does not answer, NATS is disconnected or publishes time out, the loop made no
 * progress for `healthStaleMs`); 200 only while it relays.
 * GET /live is liveness for an orchestrator that restarts processes: 200 while the process
 * is alive and either running or working towards it (waiting for a store or NATS that is not
 * reachable is not a reason to restart: a new process would wait the same way), 503 only
 * when the running loop made no progress for `healthStaleMs`, which a restart may cure.
 * GET /ready is readiness: 503 with the reason until the store and NATS answered and the
 * loop runs, then `relay.health()` (200 only when store, NATS and loop are fine).
 * GET /metrics is the Prometheus text (needs the optional peer prom-client), 503 before the
 * relay runs. Every body but /metrics is JSON.
 */
export const serveHttp = async (
  status: RelayStatus,
  port: number,
  logger: TxboxLogger,
  options: { healthTimeoutMs?: number | undefined } = {},
): Promise<Server> => {
  const healthTimeoutMs = options.healthTimeoutMs ?? HEALTH_TIMEOUT_MS
  let exporter: Promise<PrometheusExporter> | undefined
  const json = (response: import('node:http').ServerResponse, code: number, body: unknown): void => {
    response.writeHead(code, { 'content-type': 'application/json' })
    response.end(`${JSON.stringify(body)}\n`)
  }
  const server = createServer((request, response) => {
    const reply = async (): Promise<void> => {
      const relay = status.phase === 'running' ? status.relay : undefined
      const health = request.url === '/health'
      if (request.method === 'GET' && (health || request.url === '/live')) {
        if (relay === undefined) {
          json(response, health ? 503 : 200, {
            alive: true,
            ready: false,
            phase: status.phase,
            reason: status.reason,
          })
          return
        }
        const report = await withTimeout(relay.health(), healthTimeoutMs)
        if (report === undefined) {
          json(response, health ? 503 : 200, {
            alive: true,
            ready: false,
            phase: status.phase,
            reason: `relay.health() did not answer within ${healthTimeoutMs} ms`,
          })
          return
        }
        const alive = report.loop.ok
        json(response, (health ? report.ok : alive) ? 200 : 503, {
          alive,
          ready: report.ok,
          phase: status.phase,
          ...(report.ok ? {} : { reason: firstProblem(report) }),
          health: report,
        })
        return
      }
      if (request.method === 'GET' && request.url === '/ready') {
        if (relay === undefined) {
          json(response, 503, { ready: false, phase: status.phase, reason: status.reason })
          return
        }
        const report = await withTimeout(relay.health(), healthTimeoutMs)
        if (report === undefined) {
          json(response, 503, {
            ready: false,
            phase: status.phase,
            reason: `relay.health() did not answer within ${healthTimeoutMs} ms`,
          })
          return
        }
        json(response, report.ok ? 200 : 503, {
          ready: report.ok,
          phase: status.phase,
          ...(report.ok ? {} : { reason: firstProblem(report) }),
          ...report,
        })
        return
      }
      if (request.method === 'GET' && request.url === '/metrics') {
        const source = status.relay
        if (source === undefined) {
          response.writeHead(503, { 'content-type': 'text/plain' })
          response.end(`the relay is not running yet: ${status.reason}\n`)
          return
        }
        exporter ??= createPrometheusExporter({ relay: source })
        const ready = await exporter
        response.writeHead(200, { 'content-type': ready.contentType })
        response.end(await ready.metrics())
        return
      }
      response.writeHead(404, { 'content-type': 'text/plain' })
      response.end('GET /health, GET /live, GET /ready or GET /metrics\n')
    }
    reply().catch((error: unknown) => {
      logger.error('http request failed', { url: request.url, error: messageOf(error) })
      if (!response.headersSent) response.writeHead(500, { 'content-type': 'text/plain' })
      response.end(`${messageOf(error)}\n`)
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return server
}

/** The port a server listens on (the real one when it was asked for port 0). */
export const listeningPort = (server: Server): number => (server.address() as AddressInfo).port
