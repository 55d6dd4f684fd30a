import { existsSync, readFileSync } from 'node:fs'
import { imageVariable, type StartedServer, startContainer } from './containers.js'
import type { ServerConnection, ServerEngine } from './target.js'

/**
 * The variable that names each engine's server: `TXBOX_POSTGRES_URL`, ...; or a variant's,
 * for a second target on the same engine (`TXBOX_MYSQL8_URL`).
 */
export const urlVariable = (name: string): string => `TXBOX_${name.toUpperCase()}_URL`

/** What a URL of each engine looks like, for the message that asks for one. */
const EXAMPLE_URLS: Readonly<Record<ServerEngine, string>> = {
  postgres: 'postgres://user:password@127.0.0.1:5432/db',
  mysql: 'mysql://user:password@127.0.0.1:3306/db',
  mongodb: 'mongodb://127.0.0.1:27017/db',
  redis: 'redis://127.0.0.1:6379',
  dynamodb: 'http://127.0.0.1:8000',
  nats: 'nats://127.0.0.1:4222',
}

/** A server found for a target, with what stops it (containers) when the run ends. */
export interface ProvisionedServer {
  readonly connection: ServerConnection
  readonly stop: () => Promise<void>
}

/** No server could be found: the target is reported as not run, with this reason. */
export interface Unprovisioned {
  readonly notRun: string
}

/** True when `TXBOX_REQUIRE_ALL=1`: a target that is not run must fail the run (CI). */
export const requireAll = (env: NodeJS.ProcessEnv = process.env): boolean =>
  env.TXBOX_REQUIRE_ALL === '1' || env.TXBOX_REQUIRE_ALL === 'true'

/** True when `TXBOX_TESTCONTAINERS=0` (or `false`): never start a container, even with Docker. */
export const testcontainersOff = (env: NodeJS.ProcessEnv = process.env): boolean =>
  env.TXBOX_TESTCONTAINERS === '0' || env.TXBOX_TESTCONTAINERS === 'false'

/**
 * Whether a Docker engine may be reachable, judged without talking to it, from what
 * testcontainers itself reads: `DOCKER_HOST`, `docker.host` or `tc.host` in
 * `~/.testcontainers.properties`, then the usual sockets (the system one, Docker Desktop's,
 * rootless Docker's). `exists` is for tests.
 */
export const dockerConfigured = (
  env: NodeJS.ProcessEnv = process.env,
  exists: (path: string) => boolean = existsSync,
): boolean => {
  if (env.DOCKER_HOST) return true
  const home = env.HOME ?? ''
  const properties = `${home}/.testcontainers.properties`
  if (home && exists(properties)) {
    let text = ''
    try {
      text = readFileSync(properties, 'utf8')
    } catch {
      // unreadable: testcontainers cannot use it either
    }
    if (/^\s*(docker\.host|tc\.host)\s*=\s*\S/m.test(text)) return true
  }
  const sockets = [
    '/var/run/docker.sock',
    ...(home ? [`${home}/.docker/run/docker.sock`, `${home}/.docker/desktop/docker.sock`] : []),
    ...(env.XDG_RUNTIME_DIR ? [`${env.XDG_RUNTIME_DIR}/docker.sock`] : []),
  ]
  return sockets.some((socket) => exists(socket))
}

/**
 * Finds the server for an engine, in this order: an explicit URL (`--url`, then
 * `TXBOX_<ENGINE>_URL`); a testcontainers container when a Docker engine is reachable; else
 * the reason it is not run. Never throws for a missing server: the caller decides whether
 * "not run" is acceptable (`TXBOX_REQUIRE_ALL`).
 */
export const provisionServer = async (
  engine: ServerEngine,
  options: {
    url?: string | undefined
    env?: NodeJS.ProcessEnv
    /** The caller's own way to pass a URL (the CLI's `--url`), named first in the not-run reason. */
    urlOption?: string | undefined
    /** The image to start (the CLI's `--image`); else `TXBOX_<NAME>_IMAGE`, else the official one. */
    image?: string | undefined
    /**
     * The name in `TXBOX_<NAME>_URL` and `TXBOX_<NAME>_IMAGE` (default: the engine), for a
     * second target on one engine: `mysql8` reads `TXBOX_MYSQL8_URL` and `TXBOX_MYSQL8_IMAGE`.
     */
    name?: string | undefined
    /** Whether a Docker engine is configured; default {@link dockerConfigured} of `env` (tests set it). */
    docker?: boolean | undefined
  } = {},
): Promise<ProvisionedServer | Unprovisioned> => {
  const env = options.env ?? process.env
  const noop = async () => {}
  if (options.url) return { connection: { engine, url: options.url, source: 'option' }, stop: noop }
  const name = options.name ?? engine
  const fromEnv = env[urlVariable(name)]
  if (fromEnv) return { connection: { engine, url: fromEnv, source: 'env' }, stop: noop }
  const passUrl = [
    ...(options.urlOption ? [`pass ${options.urlOption} <url>`] : []),
    `set ${urlVariable(name)}`,
  ].join(' or ')
  // A third-party target may name an engine the suite has no container preset for: it can
  // still be certified against a server the user provides.
  if (!Object.hasOwn(EXAMPLE_URLS, engine)) {
    return {
      notRun: `no ${engine} server: the suite cannot start a ${engine} server itself (it knows ${Object.keys(EXAMPLE_URLS).join(', ')}): ${passUrl} to the server the target should connect to`,
    }
  }
  if (testcontainersOff(env)) {
    return {
      notRun: `no ${engine} server: ${passUrl} (e.g. ${EXAMPLE_URLS[engine]}); starting one in Docker is turned off (TXBOX_TESTCONTAINERS=${env.TXBOX_TESTCONTAINERS})`,
    }
  }
  if (!(options.docker ?? dockerConfigured(env))) {
    return {
      notRun: `no ${engine} server: ${passUrl} (e.g. ${EXAMPLE_URLS[engine]}), or make a Docker engine reachable (DOCKER_HOST) so that testcontainers (an optional peer) can start one`,
    }
  }
  let started: StartedServer
  try {
    started = await startContainer(engine, { image: options.image ?? env[imageVariable(name)], name })
  } catch (error) {
    return {
      notRun: `no ${engine} server: ${passUrl}; testcontainers could not start one (${error instanceof Error ? error.message : String(error)})`,
    }
  }
  // A server without a feature the preset sets up (MongoDB replica sets on FerretDB) still
  // runs; the target detects and reports the capability.
  if (started.initSkipped) console.warn(`[txbox] ${started.image}: ${started.initSkipped}`)
  return {
    connection: { engine, url: started.url, source: 'testcontainers', image: started.image },
    stop: started.stop,
  }
}
