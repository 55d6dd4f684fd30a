import { readFileSync } from 'node:fs'
import type { Server } from 'node:http'
import { hostname } from 'node:os'
import { createJsonLogger, messageOf, OutboxRelay, TxboxError, type TxboxLogger } from '@txbox/core'
import type { NatsConnection } from 'nats'
import { ConfigurationError, helpText, parseCli, type RelayConfig, UsageError } from './config.js'
import { listeningPort, serveHttp } from './http.js'
import { natsConnectOptions } from './nats-auth.js'
import { retryUntilReady } from './retry.js'
import { RelayStatus } from './status.js'
import { type CreatedStore, createStore, type Importer, importFor, nodeImporter } from './stores.js'
import { type StartedOpenTelemetry, startOpenTelemetry } from './telemetry.js'
import { redactUrl } from './urls.js'

/** Where the CLI reads and writes; the defaults are the process's. */
export interface CliIo {
  env?: NodeJS.ProcessEnv | undefined
  stdout?: { write(text: string): unknown } | undefined
  stderr?: { write(text: string): unknown } | undefined
  /** Stop like SIGTERM does (for embedding and tests). SIGTERM and SIGINT always stop it. */
  signal?: AbortSignal | undefined
  /** Called once the relay runs (after the store, NATS and the HTTP port are up). */
  onReady?: ((relay: OutboxRelay) => void) | undefined
  /** Loads the store's adapter and driver and `nats` (default `import()`); tests simulate a missing package. */
  importer?: Importer | undefined
}

/** `@txbox/relay`'s version, from its package.json (`src/` and `dist/` sit next to it). */
export const RELAY_VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version

const optional = <K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } =>
  (value === undefined ? {} : { [key]: value }) as { [P in K]?: V }

/** Exit codes: see the README. */
const EXIT = { stopped: 0, failed: 1, configuration: 2 } as const

/**
 * Runs the relay until SIGTERM/SIGINT (or `io.signal`), then drains the batch in flight,
 * closes NATS and the database, and resolves the exit code: 0 after a stop (in any phase,
 * also while still waiting for a server), 1 when the loop died or the HTTP port could not
 * be opened, 2 for configuration that can never work (printed, naming the flag or variable).
 *
 * Start-up policy: the HTTP port opens first; then the store and NATS are each tried until
 * they answer, with capped exponential backoff and one log line per failed attempt, while
 * GET /health answers 200 and GET /ready 503 with the reason.
 */
export const runRelayCli = async (argv: readonly string[], io: CliIo = {}): Promise<number> => {
  const env = io.env ?? process.env
  const stdout = io.stdout ?? process.stdout
  const stderr = io.stderr ?? process.stderr
  let config: RelayConfig
  try {
    const request = parseCli(argv, env)
    if ('help' in request) {
      stdout.write(helpText())
      return EXIT.stopped
    }
    if ('version' in request) {
      stdout.write(`${RELAY_VERSION}\n`)
      return EXIT.stopped
    }
    config = request.run
  } catch (error) {
    if (!(error instanceof ConfigurationError)) throw error
    stderr.write(
      error instanceof UsageError
        ? `${error.message}\n\n${helpText()}`
        : `${error.message}\nSee txbox-relay --help.\n`,
    )
    return EXIT.configuration
  }
  const logger = createJsonLogger({ level: config.logLevel, stream: stderr })
  const stop = new AbortController()
  const status = new RelayStatus()
  const onSignal = (signal: NodeJS.Signals): void => {
    logger.info(status.phase === 'running' ? 'signal received; draining' : 'signal received; stopping', {
      signal,
      phase: status.phase,
    })
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

  const importer = io.importer ?? nodeImporter
  const workerId = config.workerId ?? `relay-${hostname()}-${process.pid}`
  logger.info('relay starting', {
    version: RELAY_VERSION,
    workerId,
    store: config.store.kind,
    url: redactUrl(config.store.url),
    nats: config.natsServers.map(redactUrl),
    natsAuth: config.natsAuth.method,
    natsTls: config.natsAuth.tls !== undefined,
    ...optional(
      'subjectMap',
      config.subjectMap?.map((entry) => `${entry.from} -> ${entry.to}`),
    ),
  })
  let store: CreatedStore | undefined
  let nc: NatsConnection | undefined
  let server: Server | undefined
  let telemetry: StartedOpenTelemetry | undefined
  try {
    // First: the relay's spans and metrics go to the SDK registered now (see ./telemetry.ts).
    telemetry = await startOpenTelemetry(env, importer, logger)
    if (config.httpPort !== undefined) {
      try {
        server = await serveHttp(status, config.httpPort, logger)
      } catch (error) {
        logger.error('relay cannot open its HTTP port', {
          httpPort: config.httpPort,
          error: `--http-port ${config.httpPort}: ${messageOf(error)}`,
        })
        return EXIT.failed
      }
      logger.info('http listening', {
        port: listeningPort(server),
        endpoints: ['/health', '/ready', '/metrics'],
      })
    }

    const natsModule = await importFor<typeof import('nats')>(importer, 'nats', 'txbox-relay', ['nats'])
    const { createJetStreamPublisher, ensureStream } = await importFor<typeof import('@txbox/core/nats')>(
      importer,
      '@txbox/core/nats',
      'txbox-relay',
      ['nats'],
    )
    store = await createStore(config.store, { logger, importer })
    const opened = store

    const storeFields = { store: config.store.kind, url: redactUrl(config.store.url) }
    status.waiting('connecting to the store', `connecting to ${config.store.kind} at ${storeFields.url}`)
    let migrated = !config.store.migrate
    const storeReady = await retryUntilReady({
      name: 'store',
      fields: storeFields,
      signal: stop.signal,
      logger,
      onFailure: (reason) =>
        status.waiting(
          'connecting to the store',
          `${config.store.kind} at ${storeFields.url} not reachable: ${reason}`,
        ),
      describe: (error) => {
        const connection = opened.lastConnectionError()
        return connection === undefined
          ? messageOf(error)
          : `${messageOf(error)} (last connection error: ${connection})`
      },
      attempt: async () => {
        await opened.connect?.()
        if (!migrated) {
          await opened.migrate()
          migrated = true
        }
        await opened.outbox.getCountByStatus()
        return true
      },
    })
    if (storeReady === undefined) return stoppedEarly(logger, status, workerId)

    const natsFields = { nats: config.natsServers.map(redactUrl) }
    status.waiting('connecting to NATS', `connecting to NATS at ${natsFields.nats.join(', ')}`)
    nc = await retryUntilReady({
      name: 'NATS',
      fields: natsFields,
      signal: stop.signal,
      logger,
      onFailure: (reason) =>
        status.waiting(
          'connecting to NATS',
          `NATS at ${natsFields.nats.join(', ')} not reachable: ${reason}`,
        ),
      // Once connected, nats.js reconnects by itself for as long as the relay runs.
      attempt: () =>
        natsModule.connect({
          ...natsConnectOptions(config.natsAuth, natsModule),
          servers: config.natsServers,
          name: workerId,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 250,
          timeout: 5_000,
          // nats.js captures two stack traces per request (duplicate checks, stream lookups;
          // publishes are not nats.js requests) for a timeout that almost never comes
          // (docs/BENCHMARKS.md); the relay's errors name the event and the reason.
          noAsyncTraces: true,
        }),
      discard: (late) => {
        late.close().catch(() => {})
      },
    })
    if (nc === undefined) return stoppedEarly(logger, status, workerId)
    watchNats(nc, logger)
    const connection = nc

    const stream = config.stream
    if (stream) {
      status.waiting('creating the stream', `creating the JetStream stream ${stream.name}`)
      const created = await retryUntilReady({
        name: 'stream',
        fields: { stream: stream.name, subjects: stream.subjects },
        signal: stop.signal,
        logger,
        onFailure: (reason) =>
          status.waiting('creating the stream', `JetStream stream ${stream.name} not created: ${reason}`),
        attempt: async () => {
          await ensureStream(await connection.jetstreamManager(), stream)
          return true
        },
      })
      if (created === undefined) return stoppedEarly(logger, status, workerId)
    }

    let relay: OutboxRelay
    try {
      relay = new OutboxRelay({
        outbox: opened.outbox,
        publisher: createJetStreamPublisher({
          connection,
          ...optional('timeoutMs', config.publishTimeoutMs),
        }),
        workerId,
        ...optional('batchSize', config.batchSize),
        ...optional('leaseMs', config.leaseMs),
        ...optional('concurrency', config.concurrency),
        ...optional('batchesInFlight', config.batchesInFlight),
        ...optional('keyRun', config.keyRun),
        ...optional('keyedDeadLetters', config.keyedDeadLetters),
        ...optional('maxAttempts', config.maxAttempts),
        ...optional('pollIntervalMs', config.pollIntervalMs),
        ...optional('minPollIntervalMs', config.minPollIntervalMs),
        ...optional('maxBatchBytes', config.maxBatchBytes),
        // The claim bound follows the store's enqueue limit unless the flag overrides it.
        ...optional('maxEventBytes', config.maxEventBytes ?? opened.maxEventBytes),
        backoff: config.backoff,
        retention: config.retention,
        ...optional('subjectMap', config.subjectMap),
        ...optional('wakeup', opened.wakeup),
        logger,
      })
    } catch (error) {
      // parseCli checks each option against core; what only the opened store can refuse
      // (a key run on a store without runs) lands here, named as the user set it.
      if (error instanceof TxboxError)
        throw new ConfigurationError(config.inFlagTerms(error), { cause: error })
      throw error
    }
    relay.start()
    status.running(relay)
    logger.info('relay started', {
      workerId,
      store: config.store.kind,
      nats: natsFields.nats,
      ...optional('httpPort', server === undefined ? undefined : listeningPort(server)),
    })
    io.onReady?.(relay)
    await Promise.race([stopped, relay.done])
    const crashed = relay.state === 'stopped' && !stop.signal.aborted
    status.stopping(crashed ? 'the relay loop died' : 'draining after a stop signal')
    await relay.stop()
    logger.info('relay stopped', { workerId, counters: relay.counters() })
    return crashed ? EXIT.failed : EXIT.stopped
  } catch (error) {
    if (error instanceof ConfigurationError) {
      // A plain line, like a bad flag's: a person has to read it and fix the configuration.
      stderr.write(`${error.message}\n`)
      return EXIT.configuration
    }
    logger.error('relay failed', { workerId, error: messageOf(error) })
    return EXIT.failed
  } finally {
    process.off('SIGTERM', onSignal)
    process.off('SIGINT', onSignal)
    io.signal?.removeEventListener('abort', onAbort)
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()))
    if (nc) {
      // drain() flushes what is buffered; while disconnected it cannot, so just close.
      await nc.drain().catch(() => nc?.close())
    }
    // A store that never answered may not close promptly either: a stop must stay prompt.
    await Promise.race([
      store
        ?.close()
        .catch((error: unknown) => logger.warn('closing the store failed', { error: messageOf(error) })),
      new Promise((resolve) => setTimeout(resolve, 2_000).unref()),
    ])
    // Last, so the drain's spans are exported too.
    await telemetry?.shutdown()
  }
}

const stoppedEarly = (logger: Required<TxboxLogger>, status: RelayStatus, workerId: string): number => {
  logger.info('stopped before the relay ran', { workerId, phase: status.phase })
  status.stopping('stopped before the relay ran')
  return EXIT.stopped
}

/** Logs NATS connection changes after start-up (nats.js reconnects by itself). */
const watchNats = (nc: NatsConnection, logger: Required<TxboxLogger>): void => {
  void (async () => {
    for await (const event of nc.status()) {
      const fields = { data: typeof event.data === 'object' ? JSON.stringify(event.data) : event.data }
      switch (event.type) {
        case 'disconnect':
        case 'error':
        case 'staleConnection':
        case 'ldm':
          logger.warn(`NATS ${event.type}`, fields)
          break
        case 'reconnect':
          logger.info('NATS reconnected', fields)
          break
        default:
          logger.debug(`NATS ${event.type}`, fields)
      }
    }
  })().catch(() => {})
}
