import type { ServerEngine } from './target.js'

/** A container started for a run: its connection URL, the image it runs, and how to stop it. */
export interface StartedServer {
  readonly url: string
  readonly image: string
  /** Why the preset's `init` did not apply (a MongoDB-wire server without replica sets), if so. */
  readonly initSkipped?: string
  readonly stop: () => Promise<void>
}

/**
 * The default image and settings per engine, used when a Docker engine is reachable and no
 * URL was given. The defaults are official images (Docker Hub); `TXBOX_<ENGINE>_IMAGE` or the
 * CLI's `--image` runs another that takes the same environment and arguments (the
 * `txbox-local/*` images of `scripts/docker/images.sh` do). MongoDB runs as a single-node
 * replica set so transactions work.
 */
export interface ContainerPreset {
  readonly image: string
  readonly port: number
  readonly env?: Readonly<Record<string, string>>
  readonly command?: readonly string[]
  /**
   * A log line that says the server accepts connections. Readiness also waits for the port
   * to listen inside the container: docker-proxy accepts on the host side before that.
   */
  readonly readyLog?: RegExp
  /** How often that line appears before the server is ready (PostgreSQL restarts once). */
  readonly readyLogTimes?: number
  /** A command run in the container once it is up (e.g. `rs.initiate()`). */
  readonly init?: readonly string[]
  /**
   * Tells an `init` that failed because the server has no such feature (the capability is then
   * reported by the target) from one that failed: returns the reason to go on without it.
   */
  readonly initUnsupported?: (exitCode: number, output: string) => string | undefined
  /** Run in the container after `init` until it exits 0 (e.g. until the node is primary). */
  readonly initDone?: readonly string[]
  /** A real request from the host, repeated until it succeeds or the start deadline passes. */
  readonly probe?: (url: string) => Promise<void>
  /** The connection URL for the mapped host and port. */
  readonly url: (host: string, port: number) => string
}

/** The label naming the pid of the process that started a container. */
export const OWNER_PID_LABEL = 'org.txbox.owner-pid'

/** How long a container may take from start to its first successful probe. */
const START_DEADLINE_MS = 120_000

/** DynamoDB's ListTables, unsigned credentials: DynamoDB Local checks only that they are present. */
const dynamoDbListTables = async (url: string): Promise<void> => {
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-amz-json-1.0',
      'x-amz-target': 'DynamoDB_20120810.ListTables',
      authorization:
        'AWS4-HMAC-SHA256 Credential=txbox/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=txbox',
    },
    body: '{}',
    signal: AbortSignal.timeout(5_000),
  })
  const body = await response.text()
  if (!response.ok || !body.includes('TableNames'))
    throw new Error(`ListTables answered ${response.status}: ${body.slice(0, 200)}`)
}

const MONGO_REPLICA_SET = "rs.initiate({_id:'rs0',members:[{_id:0,host:'127.0.0.1:27017'}]})"

export const CONTAINER_PRESETS: Readonly<Record<ServerEngine, ContainerPreset>> = Object.freeze({
  postgres: {
    image: 'postgres:16-alpine',
    port: 5432,
    env: { POSTGRES_USER: 'txbox', POSTGRES_PASSWORD: 'txbox', POSTGRES_DB: 'txbox' },
    command: ['-c', 'fsync=off', '-c', 'max_connections=200'],
    readyLog: /database system is ready to accept connections/,
    readyLogTimes: 2,
    url: (host, port) => `postgres://txbox:txbox@${host}:${port}/txbox`,
  },
  // MariaDB, as the native path runs; MySQL 8 is the `mysql8` target's image (TXBOX_MYSQL8_IMAGE).
  mysql: {
    image: 'mariadb:10.11',
    port: 3306,
    env: {
      MYSQL_ROOT_PASSWORD: 'txbox',
      MYSQL_USER: 'txbox',
      MYSQL_PASSWORD: 'txbox',
      MYSQL_DATABASE: 'txbox',
    },
    // A container has no working DNS here: without skip-name-resolve each new connection
    // waits ~10 s for a reverse lookup of the client's address.
    command: ['--character-set-server=utf8mb4', '--max-allowed-packet=67108864', '--skip-name-resolve'],
    // MySQL says "ready for connections. Version: ... port: 3306" on one line, MariaDB on
    // two; both entrypoints first run a server without networking ("port: 0").
    readyLog: /port: 3306\s/,
    url: (host, port) => `mysql://txbox:txbox@${host}:${port}/txbox`,
  },
  mongodb: {
    image: 'mongo:7',
    port: 27017,
    command: ['--replSet', 'rs0', '--bind_ip_all'],
    // mongod, or FerretDB (txbox-local/ferretdb).
    readyLog: /Waiting for connections|FerretDB \S+ listening on/,
    init: ['mongosh', '--quiet', '--eval', MONGO_REPLICA_SET],
    // A MongoDB-wire server without replica sets (FerretDB) has no mongosh, or refuses the
    // command: it runs without transactions, which the target detects and reports.
    initUnsupported: (exitCode, output) =>
      exitCode === 126 || exitCode === 127 || /executable file not found|no such file/i.test(output)
        ? 'the image has no mongosh, so no replica set was initiated'
        : /CommandNotFound|no such command|NoReplicationEnabled|not running with --replSet/i.test(output)
          ? `the server refuses replica-set commands (${output.trim().slice(0, 200)})`
          : undefined,
    // rs.initiate returns before the node is elected: wait until it is primary.
    initDone: ['mongosh', '--quiet', '--eval', 'quit(db.hello().isWritablePrimary ? 0 : 1)'],
    // directConnection: the member advertises 127.0.0.1:27017 inside the container, which
    // is not the mapped port on the host; talk to it directly instead of through discovery.
    url: (host, port) => `mongodb://${host}:${port}/txbox?directConnection=true`,
  },
  redis: {
    image: 'redis:7-alpine',
    port: 6379,
    command: ['redis-server', '--appendonly', 'no'],
    readyLog: /Ready to accept connections/,
    url: (host, port) => `redis://${host}:${port}`,
  },
  dynamodb: {
    image: 'amazon/dynamodb-local:2.5.2',
    port: 8000,
    command: ['-jar', 'DynamoDBLocal.jar', '-inMemory', '-sharedDb'],
    // Printed 5-10 s before Jetty listens: the port and a real request decide.
    readyLog: /CorsParams/,
    probe: (url) => dynamoDbListTables(url),
    url: (host, port) => `http://${host}:${port}`,
  },
  nats: {
    image: 'nats:2.10-alpine',
    port: 4222,
    command: ['-js'],
    readyLog: /Server is ready/,
    url: (host, port) => `nats://${host}:${port}`,
  },
})

/** The official images of the variants: a second target on one engine whose server differs. */
const VARIANT_IMAGES: Readonly<Record<string, string>> = { mysql8: 'mysql:8.0' }

/** The variable that picks another image for `name` (an engine, or a variant such as `mysql8`). */
export const imageVariable = (name: string): string => `TXBOX_${name.toUpperCase()}_IMAGE`

/**
 * The image a container of `engine` runs: `options.image`, else `TXBOX_<NAME>_IMAGE`, else the
 * variant's official image (`mysql8`: `mysql:8.0`), else the engine's.
 */
export const containerImage = (
  engine: ServerEngine,
  options: StartContainerOptions = {},
  env: NodeJS.ProcessEnv = process.env,
): string =>
  options.image ||
  env[imageVariable(options.name ?? engine)] ||
  (options.name && Object.hasOwn(VARIANT_IMAGES, options.name) ? VARIANT_IMAGES[options.name] : undefined) ||
  CONTAINER_PRESETS[engine].image

/** Options of {@link startContainer}. */
export interface StartContainerOptions {
  /** The image to run instead of the preset's default. */
  readonly image?: string | undefined
  /** The name in `TXBOX_<NAME>_IMAGE` (default: the engine; `mysql8` for the MySQL 8 target). */
  readonly name?: string | undefined
}

interface Stoppable {
  stop(): Promise<unknown>
}

/**
 * Containers this process started and has not stopped. Ryuk (testcontainers' reaper) removes
 * them when the process dies, but it may be disabled (`TESTCONTAINERS_RYUK_DISABLED=true`, e.g.
 * where its image cannot be pulled): a SIGINT or SIGTERM then stops them here before exiting.
 */
const running = new Set<Stoppable>()
let signalsHooked = false

const stopAllAndExit = (signal: NodeJS.Signals): void => {
  process.stderr.write(`[txbox] ${signal}: stopping ${running.size} container(s) before exiting\n`)
  const code = signal === 'SIGINT' ? 130 : 143
  const stops = [...running].map((container) => container.stop().catch(() => undefined))
  const deadline = setTimeout(() => process.exit(code), 15_000)
  deadline.unref()
  void Promise.all(stops).then(() => process.exit(code))
}

const track = (container: Stoppable): void => {
  running.add(container)
  if (signalsHooked) return
  signalsHooked = true
  process.once('SIGINT', stopAllAndExit)
  process.once('SIGTERM', stopAllAndExit)
}

const untrack = (container: Stoppable): void => {
  running.delete(container)
  if (running.size > 0 || !signalsHooked) return
  signalsHooked = false
  process.removeListener('SIGINT', stopAllAndExit)
  process.removeListener('SIGTERM', stopAllAndExit)
}

/** How many containers this process has running (for tests of the signal handling). */
export const runningContainerCount = (): number => running.size

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Starts the engine's container with testcontainers, loaded only when needed: it is an
 * optional peer dependency, so users who provide URLs never install it. The image is
 * `options.image`, else `TXBOX_<NAME>_IMAGE`, else the preset's official one.
 */
export const startContainer = async (
  engine: ServerEngine,
  options: StartContainerOptions = {},
): Promise<StartedServer> => {
  const preset = CONTAINER_PRESETS[engine]
  const variable = imageVariable(options.name ?? engine)
  const image = containerImage(engine, options)
  let testcontainers: typeof import('testcontainers')
  try {
    testcontainers = await import('testcontainers')
  } catch {
    throw new Error('the optional peer dependency `testcontainers` is not installed')
  }
  const { GenericContainer, Wait } = testcontainers
  // The process that owns it: a script can tell a container left by a killed run (its owner
  // is gone) from one another run still uses.
  let container = new GenericContainer(image)
    .withExposedPorts(preset.port)
    .withLabels({ [OWNER_PID_LABEL]: String(process.pid) })
  if (preset.env) container = container.withEnvironment({ ...preset.env })
  if (preset.command) container = container.withCommand([...preset.command])
  const listening = Wait.forListeningPorts()
  container = container
    .withWaitStrategy(
      preset.readyLog
        ? Wait.forAll([Wait.forLogMessage(preset.readyLog, preset.readyLogTimes ?? 1), listening])
        : listening,
    )
    .withStartupTimeout(START_DEADLINE_MS)
  const deadline = Date.now() + START_DEADLINE_MS
  let started: Awaited<ReturnType<typeof container.start>>
  try {
    started = await container.start()
  } catch (error) {
    throw new Error(await explainStartFailure(testcontainers, image, variable, error), { cause: error })
  }
  track(started)
  const stop = async () => {
    try {
      await started.stop()
    } finally {
      untrack(started)
    }
  }
  try {
    const url = preset.url(started.getHost(), started.getMappedPort(preset.port))
    let initSkipped: string | undefined
    if (preset.init) {
      const result = await started.exec([...preset.init])
      if (result.exitCode !== 0) {
        initSkipped = preset.initUnsupported?.(result.exitCode, result.output)
        if (initSkipped === undefined)
          throw new Error(
            `${image}: ${preset.init.join(' ')} exited with ${result.exitCode}: ${result.output}`,
          )
      } else if (preset.initDone) {
        const initDone = [...preset.initDone]
        await pollUntil(deadline, `${image}: ${initDone.join(' ')}`, async () => {
          const done = await started.exec(initDone)
          if (done.exitCode !== 0) throw new Error(`exited with ${done.exitCode}: ${done.output.trim()}`)
        })
      }
    }
    if (preset.probe) {
      const probe = preset.probe
      await pollUntil(deadline, `${image}: the first request to ${url}`, () => probe(url))
    }
    return { url, image, ...(initSkipped !== undefined ? { initSkipped } : {}), stop }
  } catch (error) {
    await stop().catch(() => undefined)
    throw error
  }
}

/** Repeats `attempt` every 250 ms until it resolves; past the deadline, fails with its last error. */
const pollUntil = async (deadline: number, what: string, attempt: () => Promise<void>): Promise<void> => {
  for (;;) {
    try {
      await attempt()
      return
    } catch (error) {
      if (Date.now() >= deadline)
        throw new Error(
          `${what} did not succeed in time: ${error instanceof Error ? error.message : String(error)}`,
        )
    }
    await sleep(250)
  }
}

/**
 * testcontainers' errors for an image it could not pull do not name the image (a registry
 * that cannot be reached fails with a connection error), nor say that the image was the
 * reaper's (Ryuk, started before the first container): say which, and what to do.
 */
const explainStartFailure = async (
  testcontainers: typeof import('testcontainers'),
  image: string,
  variable: string,
  error: unknown,
): Promise<string> => {
  const message = error instanceof Error ? error.message : String(error)
  let client: Awaited<ReturnType<typeof testcontainers.getContainerRuntimeClient>>
  try {
    client = await testcontainers.getContainerRuntimeClient()
  } catch {
    return `${image}: ${message}` // no engine answered, which the message says
  }
  if (process.env.TESTCONTAINERS_RYUK_DISABLED !== 'true') {
    try {
      await testcontainers.getReaper(client) // cached once it has started
    } catch (reaperError) {
      const reaper = process.env.RYUK_CONTAINER_IMAGE ?? "testcontainers' default testcontainers/ryuk"
      return `${image} was not started: testcontainers' reaper (Ryuk, image ${reaper}) could not start (${reaperError instanceof Error ? reaperError.message : String(reaperError)}); without a registry, set TESTCONTAINERS_RYUK_DISABLED=true (the suite then stops its containers itself, on SIGINT and SIGTERM too) or set RYUK_CONTAINER_IMAGE to a reaper image the engine has`
    }
  }
  const present = await client.image.exists(testcontainers.ImageName.fromString(image)).catch(() => true)
  if (!present)
    return `the image ${image} is not on the Docker engine and could not be pulled (${message}): pull or build it, or set ${variable} to an image the engine has`
  return `${image}: ${message}`
}
