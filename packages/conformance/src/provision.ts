import { existsSync } from 'node:fs'
import { type StartedServer, startContainer } from './containers.js'
import type { ServerConnection, ServerEngine } from './target.js'

/** The variable that names each engine's server: `TXBOX_POSTGRES_URL`, ... */
export const urlVariable = (engine: ServerEngine): string => `TXBOX_${engine.toUpperCase()}_URL`

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

/** Whether a Docker engine may be reachable, judged without talking to it. */
export const dockerConfigured = (env: NodeJS.ProcessEnv = process.env): boolean =>
  Boolean(env.DOCKER_HOST) ||
  existsSync('/var/run/docker.sock') ||
  existsSync(`${env.HOME ?? ''}/.docker/run/docker.sock`)

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
  } = {},
): Promise<ProvisionedServer | Unprovisioned> => {
  const env = options.env ?? process.env
  const noop = async () => {}
  if (options.url) return { connection: { engine, url: options.url, source: 'option' }, stop: noop }
  const fromEnv = env[urlVariable(engine)]
  if (fromEnv) return { connection: { engine, url: fromEnv, source: 'env' }, stop: noop }
  const passUrl = [
    ...(options.urlOption ? [`pass ${options.urlOption} <url>`] : []),
    `set ${urlVariable(engine)}`,
  ].join(' or ')
  // A third-party target may name an engine the suite has no container preset for: it can
  // still be certified against a server the user provides.
  if (!Object.hasOwn(EXAMPLE_URLS, engine)) {
    return {
      notRun: `no ${engine} server: the suite cannot start a ${engine} server itself (it knows ${Object.keys(EXAMPLE_URLS).join(', ')}): ${passUrl} to the server the target should connect to`,
    }
  }
  if (!dockerConfigured(env)) {
    return {
      notRun: `no ${engine} server: ${passUrl} (e.g. ${EXAMPLE_URLS[engine]}), or make a Docker engine reachable so that testcontainers (an optional peer) can start one`,
    }
  }
  let started: StartedServer
  try {
    started = await startContainer(engine)
  } catch (error) {
    return {
      notRun: `no ${engine} server: ${passUrl}; testcontainers could not start one (${error instanceof Error ? error.message : String(error)})`,
    }
  }
  return { connection: { engine, url: started.url, source: 'testcontainers' }, stop: started.stop }
}
