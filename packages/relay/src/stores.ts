import {
  type ConnectOptions,
  messageOf,
  type OutboxRepository,
  type RelayWakeup,
  STORE_KINDS,
  type StoreConnection,
  type StoreKind,
  storeRegistration,
  type TxboxLogger,
  type TxboxStore,
} from '@txbox/core'
import { ConfigurationError } from './errors.js'
import { redactUrl, urlProblem } from './urls.js'

export { STORE_KINDS, type StoreKind }

/** What each store needs installed next to `@txbox/relay`: its adapter and its driver. */
export const STORE_PACKAGES: Readonly<Record<StoreKind, readonly string[]>> = Object.fromEntries(
  STORE_KINDS.map((kind) => {
    const { adapter, driver } = storeRegistration(kind)
    return [kind, [adapter, driver]]
  }),
) as unknown as Record<StoreKind, readonly string[]>

/** Why `url` can never work for `kind` (checked before anything is loaded), or undefined. */
export const storeUrlProblem = (kind: StoreKind, url: string): string | undefined => {
  const { schemes } = storeRegistration(kind)
  if (schemes.length === 0)
    return /^[a-z][a-z0-9+.-]*:\/\//i.test(url)
      ? `is a URL, but --store ${kind} takes the path of the database file`
      : undefined
  // MongoDB seed lists (`host1,host2`) are not WHATWG URLs: its own driver judges the rest.
  if (kind === 'mongodb')
    return schemes.some((scheme) => url.startsWith(`${scheme}//`))
      ? undefined
      : `must start with ${schemes.map((scheme) => `${scheme}//`).join(' or ')}`
  return urlProblem(url, schemes)
}

/** What the CLI needs to open a store. */
export interface StoreConfig {
  kind: StoreKind
  /** A URL, or for SQLite a file path. */
  url: string
  /** sqlite / postgres / mysql table prefix; mongodb collection prefix; redis key prefix; dynamodb table name. */
  prefix?: string | undefined
  /** PostgreSQL schema. */
  schema?: string | undefined
  /** MongoDB database name (default: the one in the URL). */
  database?: string | undefined
  /** Open the PostgreSQL LISTEN/NOTIFY wake-up (default true). */
  wakeup?: boolean | undefined
  /** PostgreSQL named prepared statements (default true; false behind PgBouncer in transaction mode). */
  preparedStatements?: boolean | undefined
  /** Run the store's migrate() before relaying. */
  migrate?: boolean | undefined
}

/** An open store: the outbox, an optional wake-up hint, its event size limit, and how to release it. */
export interface OpenedStore {
  outbox: OutboxRepository<never>
  /** Hand it to the relay, which owns it and closes it in `stop()`; `close()` leaves it alone. */
  wakeup?: RelayWakeup | undefined
  /** The largest event the store accepts at enqueue (`capabilities.maxEventBytes`): the relay's claim bound follows it. */
  maxEventBytes: number
  /** Closes the client or pool (not the wakeup: the relay it was handed to closes that). */
  close(): Promise<void>
}

/** A store whose client is built but that has not talked to its server yet. */
export interface CreatedStore extends OpenedStore {
  migrate(): Promise<void>
  /**
   * Connects explicitly, for drivers that stay broken after a failed implicit connect:
   * MongoDB closes its topology when the first server selection fails, and every later
   * operation then fails with "Topology is closed" even once the server is up.
   */
  connect?(): Promise<void>
  /** The driver's last connection error, for drivers whose request errors hide it (ioredis). */
  lastConnectionError(): string | undefined
}

/** Loads a module by name: `import()` by default; tests inject a failing one. */
export type Importer = (specifier: string) => Promise<unknown>

export const nodeImporter: Importer = (specifier) => import(specifier)

const optional = <K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } =>
  (value === undefined ? {} : { [key]: value }) as { [P in K]?: V }

const isModuleNotFound = (error: unknown): boolean => {
  const code = (error as { code?: unknown } | null)?.code
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND'
}

/**
 * Imports a module that `packages` provide, turning "Cannot find package 'mysql2'" into
 * what to run: `npm i @txbox/mysql mysql2`.
 */
export const importFor = async <T>(
  importer: Importer,
  specifier: string,
  why: string,
  packages: readonly string[],
): Promise<T> => {
  try {
    return (await importer(specifier)) as T
  } catch (error) {
    if (!isModuleNotFound(error)) throw error
    const missing = /Cannot find (?:package|module) '([^']+)'/.exec(messageOf(error))?.[1] ?? specifier
    throw new ConfigurationError(
      `${why} needs ${packages.join(' and ')}, and ${JSON.stringify(missing)} is not installed: npm i ${packages.join(' ')}`,
      { cause: error },
    )
  }
}

/**
 * Loads the chosen store's adapter and driver and builds its client, without talking to
 * the server (so a failure here is configuration: a missing package, a URL or an option the
 * driver or adapter refuses) and throws {@link ConfigurationError}. SQLite opens its file
 * here: it has no server to wait for.
 */
export const createStore = async (
  config: StoreConfig,
  options: { logger?: TxboxLogger | undefined; importer?: Importer | undefined } = {},
): Promise<CreatedStore> => {
  const importer = options.importer ?? nodeImporter
  const packages = STORE_PACKAGES[config.kind]
  const load = <T>(specifier: string) => importFor<T>(importer, specifier, `--store ${config.kind}`, packages)
  return build(config, await loadConnect(config.kind, load), options.logger)
}

/** Builds the client, then runs `migrate()` when asked. Throws on any failure. */
export const openStore = async (
  config: StoreConfig,
  logger?: TxboxLogger,
  importer?: Importer,
): Promise<OpenedStore> => {
  const opened = await createStore(config, { logger, importer })
  if (config.migrate) {
    try {
      await opened.migrate()
    } catch (error) {
      await opened.close().catch(() => {})
      throw error
    }
  }
  return opened
}

/** The options the relay opens every store with: a small pool, a short connect timeout. */
const CONNECT_OPTIONS = { poolSize: 4, connectTimeoutMs: 5_000 } as const

/** What a `connect<Db>` of any adapter looks like to the relay. */
type Connect = (
  url: string,
  options: ConnectOptions & {
    schema?: string | undefined
    database?: string | undefined
    preparedStatements?: boolean | undefined
  },
) => StoreConnection<TxboxStore<unknown>, unknown> & { connect?(): Promise<void> }

/** Loads the adapter's `connect<Db>` named by the registry; the driver first, its name being the less obvious one to report. */
const loadConnect = async (kind: StoreKind, load: <T>(specifier: string) => Promise<T>): Promise<Connect> => {
  const { adapter, driver, connect } = storeRegistration(kind)
  await load(driver)
  const module = await load<Record<string, unknown>>(adapter)
  const found = module[connect]
  if (typeof found !== 'function')
    throw new ConfigurationError(
      `${adapter} has no ${connect}(): install a version of ${adapter} that matches @txbox/relay`,
    )
  return found as Connect
}

/** The flag of the setting an adapter's refusal names, so the message says what to change. */
const refusedFlag = (config: StoreConfig, message: string): string => {
  if (/\bschema\b/.test(message)) return `--schema ${JSON.stringify(config.schema)}`
  if (/(Prefix|tableName)\b/.test(message) && config.prefix !== undefined)
    return `--prefix ${JSON.stringify(config.prefix)}`
  return `--url ${JSON.stringify(redactUrl(config.url))}`
}

const build = (config: StoreConfig, connect: Connect, logger: TxboxLogger | undefined): CreatedStore => {
  let connection: ReturnType<Connect>
  try {
    connection = connect(config.url, {
      ...CONNECT_OPTIONS,
      prefix: config.prefix,
      schema: config.schema,
      database: config.database,
      preparedStatements: config.preparedStatements,
      logger,
    })
  } catch (error) {
    // The adapter validates its names (tablePrefix, keyPrefix, tableName, schema...) and the
    // file or URL the driver parses.
    throw new ConfigurationError(
      `the ${config.kind} store refused ${refusedFlag(config, messageOf(error))}: ${messageOf(error)}`,
      { cause: error },
    )
  }
  const { store } = connection
  // Nothing connects until the relay's first listen(): a wakeup never handed over holds nothing.
  const wakeup =
    config.wakeup === false || !('createWakeup' in store)
      ? undefined
      : (store as { createWakeup(): RelayWakeup }).createWakeup()
  return {
    outbox: store.outbox as OutboxRepository<never>,
    migrate: () => store.migrate(),
    maxEventBytes: store.capabilities.maxEventBytes,
    ...optional('wakeup', wakeup),
    ...optional('connect', connection.connect?.bind(connection)),
    lastConnectionError: () => connection.lastConnectionError(),
    close: () => connection.close(),
  }
}
