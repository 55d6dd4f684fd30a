import type { ServerEngine } from './target.js'

/** A container started for a run: its connection URL and how to stop it. */
export interface StartedServer {
  readonly url: string
  readonly stop: () => Promise<void>
}

/**
 * The official image and settings per engine, used when a Docker engine is reachable and
 * no URL was given. MongoDB runs as a single-node replica set so transactions work.
 */
export interface ContainerPreset {
  readonly image: string
  readonly port: number
  readonly env?: Readonly<Record<string, string>>
  readonly command?: readonly string[]
  /** A log line that says the server accepts connections. */
  readonly readyLog?: RegExp
  /** How often that line appears before the server is ready (PostgreSQL restarts once). */
  readonly readyLogTimes?: number
  /** A command run in the container once it is up (e.g. `rs.initiate()`). */
  readonly init?: readonly string[]
  /** The connection URL for the mapped host and port. */
  readonly url: (host: string, port: number) => string
}

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
  mysql: {
    image: 'mysql:8.4',
    port: 3306,
    env: {
      MYSQL_ROOT_PASSWORD: 'txbox',
      MYSQL_USER: 'txbox',
      MYSQL_PASSWORD: 'txbox',
      MYSQL_DATABASE: 'txbox',
    },
    command: ['--character-set-server=utf8mb4', '--max-allowed-packet=67108864'],
    readyLog: /ready for connections.*port: 3306/,
    url: (host, port) => `mysql://txbox:txbox@${host}:${port}/txbox`,
  },
  mongodb: {
    image: 'mongo:7',
    port: 27017,
    command: ['--replSet', 'rs0', '--bind_ip_all'],
    readyLog: /Waiting for connections/,
    init: [
      'mongosh',
      '--quiet',
      '--eval',
      "rs.initiate({_id:'rs0',members:[{_id:0,host:'127.0.0.1:27017'}]})",
    ],
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
    readyLog: /CorsParams/,
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

/**
 * Starts the engine's container with testcontainers, loaded only when needed: it is an
 * optional peer dependency, so users who provide URLs never install it.
 */
export const startContainer = async (engine: ServerEngine): Promise<StartedServer> => {
  const preset = CONTAINER_PRESETS[engine]
  let testcontainers: typeof import('testcontainers')
  try {
    testcontainers = await import('testcontainers')
  } catch {
    throw new Error('the optional peer dependency `testcontainers` is not installed')
  }
  const { GenericContainer, Wait } = testcontainers
  let container = new GenericContainer(preset.image).withExposedPorts(preset.port)
  if (preset.env) container = container.withEnvironment({ ...preset.env })
  if (preset.command) container = container.withCommand([...preset.command])
  if (preset.readyLog)
    container = container.withWaitStrategy(Wait.forLogMessage(preset.readyLog, preset.readyLogTimes ?? 1))
  const started = await container.start()
  if (preset.init) {
    const result = await started.exec([...preset.init])
    if (result.exitCode !== 0) {
      await started.stop()
      throw new Error(
        `${preset.image}: ${preset.init.join(' ')} exited with ${result.exitCode}: ${result.output}`,
      )
    }
  }
  return {
    url: preset.url(started.getHost(), started.getMappedPort(preset.port)),
    stop: async () => {
      await started.stop()
    },
  }
}
