// The image's HEALTHCHECK: GET /health on the relay's HTTP port (TXBOX_RELAY_HTTP_PORT, set
// in the image). 200 only while the relay relays: store and NATS answer and the loop runs.
const port = process.env.TXBOX_RELAY_HTTP_PORT ?? '9464'
try {
  const response = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(4_000) })
  process.exit(response.ok ? 0 : 1)
} catch {
  process.exit(1)
}
