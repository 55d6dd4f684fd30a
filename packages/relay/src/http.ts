import { createServer, type Server } from 'node:http'
import {
  createPrometheusExporter,
  messageOf,
  type OutboxRelay,
  type PrometheusExporter,
  type TxboxLogger,
} from '@txbox/core'

/**
 * GET /metrics (Prometheus text; needs the optional peer prom-client) and GET /health
 * (200 when store, NATS and loop are fine, else 503; JSON body either way).
 */
export const serveHttp = async (relay: OutboxRelay, port: number, logger: TxboxLogger): Promise<Server> => {
  let exporter: Promise<PrometheusExporter> | undefined
  const server = createServer((request, response) => {
    const reply = async (): Promise<void> => {
      if (request.method === 'GET' && request.url === '/health') {
        const report = await relay.health()
        response.writeHead(report.ok ? 200 : 503, { 'content-type': 'application/json' })
        response.end(JSON.stringify(report))
        return
      }
      if (request.method === 'GET' && request.url === '/metrics') {
        exporter ??= createPrometheusExporter({ relay })
        const ready = await exporter
        response.writeHead(200, { 'content-type': ready.contentType })
        response.end(await ready.metrics())
        return
      }
      response.writeHead(404, { 'content-type': 'text/plain' })
      response.end('GET /metrics or GET /health\n')
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
