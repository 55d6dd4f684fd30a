import type { Server } from 'node:http'
import { hostname } from 'node:os'
import { messageOf, OutboxRelay } from '@txbox/core'
import { createJetStreamPublisher, ensureStream } from '@txbox/core/nats'
import { connect, type NatsConnection } from 'nats'
import { helpText, parseConfig, type RelayConfig, UsageError } from './config.js'
import { serveHttp } from './http.js'
import { jsonLogger } from './logger.js'
import { type OpenedStore, openStore } from './stores.js'

/** Where the CLI reads and writes; the defaults are the process's. */
export interface CliIo {
  env?: NodeJS.ProcessEnv | undefined
  stdout?: { write(text: string): unknown } | undefined
  stderr?: { write(text: string): unknown } | undefined
  /** Stop like SIGTERM does (for embedding and tests). SIGTERM and SIGINT always stop it. */
  signal?: AbortSignal | undefined
  /** Called once the relay runs (after the store, NATS and the HTTP port are up). */
  onReady?: ((relay: OutboxRelay) => void) | undefined
}

const optional = <K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } =>
  (value === undefined ? {} : { [key]: value }) as { [P in K]?: V }

/**
 * Runs the relay until SIGTERM/SIGINT (or `io.signal`), then drains the batch in flight,
 * closes NATS and the database, and resolves the exit code: 0 after a clean stop, 1 when it
 * could not start or the loop died, 2 on a usage error.
 */
export const runRelayCli = async (argv: readonly string[], io: CliIo = {}): Promise<number> => {
  const env = io.env ?? process.env
  const stdout = io.stdout ?? process.stdout
  const stderr = io.stderr ?? process.stderr
  let config: RelayConfig | undefined
  try {
    config = parseConfig(argv, env)
  } catch (error) {
    if (!(error instanceof UsageError)) throw error
    stderr.write(`txbox-relay: ${error.message}\n\n${helpText()}`)
    return 2
  }
  if (config === undefined) {
    stdout.write(helpText())
    return 0
  }
  const logger = jsonLogger(config.logLevel, stderr)
  const stop = new AbortController()
  const onSignal = (signal: NodeJS.Signals): void => {
    logger.info('signal received; draining', { signal })
    stop.abort()
  }
  const onAbort = () => stop.abort()
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
  io.signal?.addEventListener('abort', onAbort, { once: true })
  if (io.signal?.aborted) stop.abort()
  const stopped = new Promise<void>((resolve) =>
    stop.signal.addEventListener('abort', () => resolve(), { once: true }),
  )

  let store: OpenedStore | undefined
  let nc: NatsConnection | undefined
  let server: Server | undefined
  const workerId = config.workerId ?? `relay-${hostname()}-${process.pid}`
  try {
    store = await openStore(config.store, logger)
    const connecting = connect({
      servers: config.natsServers,
      name: workerId,
      // Keep trying for as long as the relay runs: a NATS restart must not end it, and
      // neither must a NATS that is not up yet when the relay starts.
      waitOnFirstConnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    })
    // A stop while NATS is still unreachable must not wait for it.
    nc = await Promise.race([connecting, stopped.then(() => undefined)])
    if (nc === undefined) {
      connecting.then((late) => late.close()).catch(() => {})
      logger.info('stopped before NATS was reachable', { workerId })
      return 0
    }
    if (config.stream) await ensureStream(await nc.jetstreamManager(), config.stream)
    const relay = new OutboxRelay({
      outbox: store.outbox,
      publisher: createJetStreamPublisher({
        connection: nc,
        ...optional('timeoutMs', config.publishTimeoutMs),
      }),
      workerId,
      ...optional('batchSize', config.batchSize),
      ...optional('leaseMs', config.leaseMs),
      ...optional('concurrency', config.concurrency),
      ...optional('maxAttempts', config.maxAttempts),
      ...optional('pollIntervalMs', config.pollIntervalMs),
      backoff: config.backoff,
      retention: config.retention,
      ...optional('wakeup', store.wakeup),
      logger,
    })
    if (config.httpPort !== undefined) server = await serveHttp(relay, config.httpPort, logger)
    relay.start()
    logger.info('relay started', {
      workerId,
      store: config.store.kind,
      nats: config.natsServers,
      ...optional('httpPort', config.httpPort),
    })
    io.onReady?.(relay)
    await Promise.race([stopped, relay.done])
    const crashed = relay.state === 'stopped' && !stop.signal.aborted
    await relay.stop()
    logger.info('relay stopped', { workerId, counters: relay.counters() })
    return crashed ? 1 : 0
  } catch (error) {
    logger.error('relay failed', { workerId, error: messageOf(error) })
    return 1
  } finally {
    process.off('SIGTERM', onSignal)
    process.off('SIGINT', onSignal)
    io.signal?.removeEventListener('abort', onAbort)
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()))
    if (nc) {
      // drain() flushes what is buffered; while disconnected it cannot, so just close.
      await nc.drain().catch(() => nc?.close())
    }
    await store
      ?.close()
      .catch((error: unknown) => logger.warn('closing the store failed', { error: messageOf(error) }))
  }
}
