import { parseArgs } from 'node:util'
import {
  type KeyedDeadLetters,
  LOG_LEVELS,
  type LogLevel,
  OutboxRelay,
  type OutboxRelayOptions,
  type OutboxRepository,
  SubjectMap,
  type SubjectMapEntry,
  TxboxError,
  Validator,
} from '@txbox/core'
import { type ConfigFile, readConfigFile, readSecretFile } from './config-file.js'
import { ConfigurationError, UsageError } from './errors.js'
import { type NatsAuth, natsAuthFrom } from './nats-auth.js'
import { STORE_KINDS, type StoreConfig, type StoreKind, storeUrlProblem } from './stores.js'
import { redactUrl, urlProblem } from './urls.js'

/**
 * Every flag and its help line. A `TXBOX_RELAY_<NAME>` variable and a config file key of
 * the flag's name can set each one, except `flagOnly` ones (`--help`, `--version`) and
 * `--config` itself (not in the file); a `secret` one can also be read from the file named
 * by `TXBOX_RELAY_<NAME>_FILE`.
 */
const FLAGS = {
  config: {
    type: 'string',
    help: 'read options from this YAML or JSON file, keys named like the flags (a flag or variable wins)',
    notInFile: true,
  },
  store: { type: 'string', help: `the store: ${STORE_KINDS.join(' | ')} (required)` },
  url: {
    type: 'string',
    help: 'the database URL; for sqlite the database file path (required)',
    secret: true,
  },
  nats: {
    type: 'string',
    help: 'NATS server URL(s), comma separated (default nats://127.0.0.1:4222)',
    secret: true,
  },
  'nats-user': { type: 'string', help: 'NATS user name (with --nats-password)', secret: true },
  'nats-password': { type: 'string', help: 'NATS password', secret: true },
  'nats-token': { type: 'string', help: 'NATS authentication token', secret: true },
  'nats-nkey': { type: 'string', help: 'file holding the NATS NKey user seed (SU...)' },
  'nats-creds': { type: 'string', help: 'NATS credentials file (user JWT and NKey seed)' },
  'nats-tls-ca': { type: 'string', help: "PEM file of the CA that signed the NATS server's certificate" },
  'nats-tls-cert': { type: 'string', help: 'PEM client certificate for NATS (with --nats-tls-key)' },
  'nats-tls-key': { type: 'string', help: 'PEM private key of --nats-tls-cert' },
  'worker-id': { type: 'string', help: "this relay's claim owner (default relay-<host>-<pid>)" },
  'batch-size': { type: 'string', help: 'events per claim, 1..10000 (default 100)' },
  'lease-ms': { type: 'string', help: 'claim lease, 1..2147483647 (default 30000)' },
  concurrency: { type: 'string', help: 'publishes in flight at once, 1..10000 (default 32)' },
  'batches-in-flight': {
    type: 'string',
    help: 'batches claimed and not yet marked at once, 1..64 (default 2; 1 = lockstep)',
  },
  'key-run': {
    type: 'string',
    help: 'events of one ordering key a claim may take together, 1..10000, on a store that declares keyRuns (default 1)',
  },
  'keyed-dead-letters': {
    type: 'string',
    help: "a dead-lettered event with an ordering key: 'block' holds its key until redriven, 'skip' lets the key go on (default block)",
  },
  'max-attempts': { type: 'string', help: 'publish attempts before dead letter (default 10)' },
  'poll-interval-ms': { type: 'string', help: 'wait when nothing is due (default 1000)' },
  'min-poll-interval-ms': {
    type: 'string',
    help: 'without a wake-up hint, the poll after a partial batch, doubling to --poll-interval-ms (default 20)',
  },
  'backoff-base-ms': { type: 'string', help: 'first retry delay (default 1000)' },
  'backoff-max-ms': { type: 'string', help: 'retry delay ceiling (default 60000)' },
  'backoff-jitter': { type: 'string', help: 'random share of the delay, 0..1 (default 0.2)' },
  'retention-days': {
    type: 'string',
    help: 'delete sent events older than this; "off" keeps them (default 7)',
  },
  'stale-minutes': { type: 'string', help: 'reset publishing events claimed longer ago; "off" (default 10)' },
  'maintenance-every-ms': { type: 'string', help: 'how often retention and stale reset run (default 60000)' },
  'publish-timeout-ms': { type: 'string', help: 'wait for each JetStream PubAck (default 5000)' },
  'max-batch-bytes': {
    type: 'string',
    help: 'bytes (payload + headers) of events one claim may hold (default 134217728, 128 MiB)',
  },
  'max-event-bytes': {
    type: 'string',
    help: "the largest event published, in bytes; larger ones are dead-lettered (default: the store's maxEventBytes)",
  },
  prefix: {
    type: 'string',
    help: 'table prefix (sqlite, postgres, mysql), collection prefix (mongodb), key prefix (redis), table name (dynamodb)',
  },
  schema: { type: 'string', help: 'PostgreSQL schema (default public)' },
  database: { type: 'string', help: "MongoDB database (default: the URL's)" },
  wakeup: { type: 'string', help: 'PostgreSQL LISTEN/NOTIFY wake-up: on | off (default on)' },
  'prepared-statements': {
    type: 'string',
    help: 'PostgreSQL named prepared statements: on | off (default on; off behind PgBouncer in transaction mode)',
  },
  migrate: { type: 'boolean', help: "run the store's migrate() first (variable: 1 | true | 0 | false)" },
  stream: { type: 'string', help: 'create this JetStream stream if missing (with --stream-subjects)' },
  'stream-subjects': { type: 'string', help: 'the subjects of --stream, comma separated' },
  'subject-map': {
    type: 'string',
    help: 'publish to other subjects: from=to, comma separated; exact or with * and >, first match wins',
  },
  'http-port': {
    type: 'string',
    help: 'serve GET /health (liveness), GET /ready (readiness) and GET /metrics on this port',
  },
  'log-level': { type: 'string', help: 'debug | info | warn | error (default info); JSON lines on stderr' },
  help: { type: 'boolean', help: 'show this help', flagOnly: true },
  version: { type: 'boolean', help: 'print the version and exit', flagOnly: true },
} as const satisfies Record<
  string,
  { type: 'string' | 'boolean'; help: string; flagOnly?: true; notInFile?: true; secret?: true }
>

type FlagName = keyof typeof FLAGS

const flagHas = (name: string, key: 'flagOnly' | 'notInFile' | 'secret'): boolean =>
  key in (FLAGS[name as FlagName] ?? {})

/** Every flag, without its dashes (`batch-size`). */
export const FLAG_NAMES: readonly string[] = Object.keys(FLAGS)

/** The keys a `--config` file may hold: the flags' names, but `help`, `version` and `config`. */
export const CONFIG_FILE_KEYS: readonly string[] = FLAG_NAMES.filter(
  (name) => !flagHas(name, 'flagOnly') && !flagHas(name, 'notInFile'),
)

/** Every `TXBOX_RELAY_*` variable the relay reads (a secret's `_FILE` form included). */
export const ENV_VARIABLES: readonly string[] = FLAG_NAMES.filter(
  (name) => !flagHas(name, 'flagOnly'),
).flatMap((name) => (flagHas(name, 'secret') ? [envName(name), `${envName(name)}_FILE`] : [envName(name)]))

export { ConfigurationError, UsageError }

/** The relay's configuration after flags and environment. */
export interface RelayConfig {
  store: StoreConfig
  natsServers: string[]
  workerId: string | undefined
  batchSize: number | undefined
  leaseMs: number | undefined
  concurrency: number | undefined
  batchesInFlight: number | undefined
  keyRun: number | undefined
  keyedDeadLetters: KeyedDeadLetters | undefined
  maxAttempts: number | undefined
  pollIntervalMs: number | undefined
  minPollIntervalMs: number | undefined
  maxBatchBytes: number | undefined
  /** Undefined: the relay takes the store's `capabilities.maxEventBytes`. */
  maxEventBytes: number | undefined
  backoff: { baseMs?: number; maxMs?: number; jitter?: number }
  retention: { sentOlderThanDays?: number | null; staleMinutes?: number | null; everyMs?: number }
  publishTimeoutMs: number | undefined
  stream: { name: string; subjects: string[] } | undefined
  /** Stored subject -> published subject (`OutboxRelay`'s `subjectMap`), validated. */
  subjectMap: SubjectMapEntry[] | undefined
  /** How the relay authenticates to NATS and whether it uses TLS. */
  natsAuth: NatsAuth
  httpPort: number | undefined
  logLevel: LogLevel
  /**
   * Core's refusal of a relay option in the user's terms (the flag, variable or file key that
   * set it): for what only the opened store can refuse, such as `--key-run` on a store
   * without key runs.
   */
  inFlagTerms(error: TxboxError): string
}

/** What the command line asks for: run with a configuration, or print the help or the version. */
export type CliRequest = { run: RelayConfig } | { help: true } | { version: true }

export function envName(flag: string): string {
  return `TXBOX_RELAY_${flag.toUpperCase().replace(/-/g, '_')}`
}

export const helpText = (): string => {
  const lines = Object.entries(FLAGS).map(([name, flag]) => {
    const line = `  --${name.padEnd(22)} ${flag.help}`
    if ('flagOnly' in flag) return line
    const env = 'secret' in flag ? `${envName(name)} or ${envName(name)}_FILE` : envName(name)
    return `${line}\n  ${''.padEnd(24)} env ${env}${'notInFile' in flag ? '' : `, file key ${name}`}`
  })
  return `Usage: txbox-relay --store <kind> --url <url> [--nats nats://host:4222] [options]

Publishes a txbox outbox to NATS JetStream until SIGTERM or SIGINT, then drains and exits 0.
Every flag can also come from the environment or a --config file; a flag wins over its
variable, a variable over the file. A secret can be read from the file a *_FILE variable names.
A store or NATS that is not reachable yet is retried (each attempt logged) while GET /health
answers 200 and GET /ready 503 with the reason. Exit codes: 0 stopped cleanly, 1 the relay
loop died or the HTTP port could not be opened, 2 configuration that can never work.

${lines.join('\n')}
`
}

const coreValidator = new Validator('relay')

/**
 * An outbox and a publisher that are never called: enough for core to validate options. The
 * outbox declares key runs, so that `--key-run` is checked for its range here; whether the
 * store takes runs is known once it is open.
 */
const inert = {
  outbox: {
    claim: async () => [],
    release: async () => {},
    keyRuns: true,
  } as unknown as OutboxRepository<never>,
  publisher: { publish: async () => ({ duplicate: false }) },
}

/** Reads each flag, else its variable, else the config file, and names the one used in every error. */
class Source {
  readonly #values: Record<string, string | boolean | undefined>
  readonly #env: Readonly<Record<string, { value: string; label: string }>>
  readonly #file: ConfigFile | undefined

  constructor(
    values: Record<string, string | boolean | undefined>,
    env: NodeJS.ProcessEnv,
    file: ConfigFile | undefined,
  ) {
    this.#values = values
    this.#env = environmentValues(env)
    this.#file = file
  }

  /** `--lease-ms`, `TXBOX_RELAY_LEASE_MS`, or `relay.yaml key lease-ms`: whichever set the value. */
  label(name: FlagName): string {
    if (this.#values[name] !== undefined) return `--${name}`
    const env = this.#env[name]
    if (env !== undefined) return env.label
    if (this.#file?.values[name] !== undefined) return this.#file.label(name)
    return `--${name}`
  }

  raw(name: FlagName): string | undefined {
    const value = this.#values[name]
    if (typeof value === 'string') return value
    const env = this.#env[name]
    if (env !== undefined) return env.value
    const fromFile = this.#file?.values[name]
    return typeof fromFile === 'string' ? fromFile : undefined
  }

  /** The config file's value when it is the one in force and not a string (a subject-map table). */
  structured(name: FlagName): unknown {
    if (this.#values[name] !== undefined || this.#env[name] !== undefined) return undefined
    const fromFile = this.#file?.values[name]
    return typeof fromFile === 'string' ? undefined : fromFile
  }

  fail(name: FlagName, message: string): never {
    throw new ConfigurationError(`${this.label(name)} ${message}`)
  }

  boolean(name: FlagName): boolean {
    if (this.#values[name] === true) return true
    const raw = this.#env[name]?.value ?? this.#file?.values[name]
    if (raw === undefined || raw === '' || raw === '0' || raw === 'false' || raw === false) return false
    if (raw === '1' || raw === 'true' || raw === true) return true
    return this.fail(name, `must be 1, true, 0 or false; got ${JSON.stringify(raw)}`)
  }

  number(name: FlagName, { integer = true } = {}): number | undefined {
    const raw = this.raw(name)
    if (raw === undefined) return undefined
    const value = Number(raw)
    if (raw.trim() === '' || !Number.isFinite(value))
      this.fail(name, `must be a number; got ${JSON.stringify(raw)}`)
    if (integer && !Number.isInteger(value)) this.fail(name, `must be an integer; got ${JSON.stringify(raw)}`)
    return value
  }

  /**
   * Runs one of core's own checks and reports its complaint under this flag's name:
   * core names the option (`timeoutMs must be ...`), the user typed `--publish-timeout-ms`.
   */
  check(name: FlagName, check: () => unknown): void {
    try {
      check()
    } catch (error) {
      if (!(error instanceof TxboxError)) throw error
      this.fail(name, error.message.replace(/^\[txbox\] \[[^\]]*\] \S+ /, ''))
    }
  }

  /**
   * Core's complaint about an `OutboxRelay` option, in the user's terms: every option name
   * it mentions becomes the flag or variable that set it (`backoff.maxMs 1000` becomes
   * `TXBOX_RELAY_BACKOFF_MAX_MS 1000`; a default stays `--backoff-max-ms`).
   */
  inFlagTerms(error: TxboxError): string {
    return error.message
      .replace(/^\[txbox\] \[[^\]]*\] /, '')
      .replace(RELAY_OPTION_NAMES, (option) => this.label(RELAY_OPTION_FLAGS[option as RelayOption]))
  }
}

/**
 * Each flag's value from the environment: `TXBOX_RELAY_<NAME>`, or for a secret the content
 * of the file `TXBOX_RELAY_<NAME>_FILE` names (a mounted Kubernetes or Docker secret) with
 * one final line break removed. Both at once is refused: which one wins would be a guess.
 */
const environmentValues = (env: NodeJS.ProcessEnv): Record<string, { value: string; label: string }> => {
  const values: Record<string, { value: string; label: string }> = {}
  for (const name of FLAG_NAMES) {
    if (flagHas(name, 'flagOnly')) continue
    const variable = envName(name)
    const direct = env[variable]
    const path = flagHas(name, 'secret') ? env[`${variable}_FILE`] : undefined
    if (direct !== undefined && path !== undefined)
      throw new UsageError(`${variable} and ${variable}_FILE are both set: keep one`)
    if (direct !== undefined) values[name] = { value: direct, label: variable }
    else if (path !== undefined)
      values[name] = { value: readSecretFile(`${variable}_FILE`, path), label: `${variable}_FILE` }
  }
  return values
}

/** The flag behind each `OutboxRelay` option the CLI sets. */
const RELAY_OPTION_FLAGS = {
  workerId: 'worker-id',
  batchSize: 'batch-size',
  leaseMs: 'lease-ms',
  concurrency: 'concurrency',
  batchesInFlight: 'batches-in-flight',
  keyRun: 'key-run',
  keyedDeadLetters: 'keyed-dead-letters',
  maxAttempts: 'max-attempts',
  pollIntervalMs: 'poll-interval-ms',
  minPollIntervalMs: 'min-poll-interval-ms',
  maxBatchBytes: 'max-batch-bytes',
  maxEventBytes: 'max-event-bytes',
  'backoff.baseMs': 'backoff-base-ms',
  'backoff.maxMs': 'backoff-max-ms',
  'backoff.jitter': 'backoff-jitter',
  'retention.sentOlderThanDays': 'retention-days',
  'retention.staleMinutes': 'stale-minutes',
  'retention.everyMs': 'maintenance-every-ms',
} as const satisfies Record<string, FlagName>

type RelayOption = keyof typeof RELAY_OPTION_FLAGS

// Whole option names only (`everyMs` alone, or `leaseMs` inside a word, is not one).
const RELAY_OPTION_NAMES = new RegExp(
  `(?<![\\w.])(?:${Object.keys(RELAY_OPTION_FLAGS)
    .map((option) => option.replace('.', '\\.'))
    .join('|')})(?![\\w.])`,
  'g',
)

const parseFlags = (argv: readonly string[]): Record<string, string | boolean | undefined> => {
  try {
    return parseArgs({
      args: [...argv],
      options: Object.fromEntries(Object.entries(FLAGS).map(([name, flag]) => [name, { type: flag.type }])),
      allowPositionals: false,
      strict: true,
    }).values
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error))
  }
}

/** A `TXBOX_RELAY_*` variable that sets nothing is a typo that would silently be ignored. */
const refuseUnknownVariables = (env: NodeJS.ProcessEnv): void => {
  const known = new Set(ENV_VARIABLES)
  const unknown = Object.keys(env).filter((key) => key.startsWith('TXBOX_RELAY_') && !known.has(key))
  if (unknown.length > 0)
    throw new UsageError(`unknown variable ${unknown.join(', ')}: no txbox-relay option reads it`)
}

const natsUrlProblem = (server: string): string | undefined =>
  // nats.js also takes host:port without a scheme.
  urlProblem(/^[a-z][a-z0-9+.-]*:\/\//i.test(server) ? server : `nats://${server}`, ['nats:', 'tls:'])

/**
 * Parses flags, falling back to `TXBOX_RELAY_*` variables, and refuses at once every value
 * that could never work, naming the flag or variable it came from. The relay's limits are
 * core's own: an `OutboxRelay` is constructed with the options, and it applies the limits
 * of the store calls and timers each option feeds.
 */
export const parseCli = (argv: readonly string[], env: NodeJS.ProcessEnv): CliRequest => {
  const values = parseFlags(argv)
  if (values.help) return { help: true }
  if (values.version) return { version: true }
  refuseUnknownVariables(env)
  const configPath = typeof values.config === 'string' ? values.config : env[envName('config')]
  const configLabel = typeof values.config === 'string' ? '--config' : envName('config')
  const file =
    configPath === undefined
      ? undefined
      : readConfigFile(configPath, configLabel, CONFIG_FILE_KEYS, flagTypes)
  const source = new Source(values, env, file)
  const get = (name: FlagName): string | undefined => source.raw(name)

  const kind = get('store')
  if (kind === undefined) throw new UsageError('--store is required')
  if (!(STORE_KINDS as readonly string[]).includes(kind))
    throw new UsageError(
      `${source.label('store')} must be one of ${STORE_KINDS.join(', ')}; got ${JSON.stringify(kind)}`,
    )
  const url = get('url')
  if (url === undefined || url === '') throw new UsageError('--url is required')
  const urlIssue = storeUrlProblem(kind as StoreKind, url)
  if (urlIssue !== undefined) source.fail('url', `${JSON.stringify(redactUrl(url))} ${urlIssue}`)

  const natsServers = (get('nats') ?? 'nats://127.0.0.1:4222').split(',').map((server) => server.trim())
  for (const server of natsServers) {
    if (server === '') source.fail('nats', 'has an empty server in its comma separated list')
    const issue = natsUrlProblem(server)
    if (issue !== undefined) source.fail('nats', `${JSON.stringify(redactUrl(server))} ${issue}`)
  }

  const wakeup = get('wakeup') ?? 'on'
  if (wakeup !== 'on' && wakeup !== 'off')
    source.fail('wakeup', `must be on or off; got ${JSON.stringify(wakeup)}`)
  const prepared = get('prepared-statements') ?? 'on'
  if (prepared !== 'on' && prepared !== 'off')
    source.fail('prepared-statements', `must be on or off; got ${JSON.stringify(prepared)}`)
  const logLevel = (get('log-level') ?? 'info') as LogLevel
  if (!LOG_LEVELS.includes(logLevel))
    source.fail('log-level', `must be one of ${LOG_LEVELS.join(', ')}; got ${JSON.stringify(logLevel)}`)
  const workerId = get('worker-id')

  const streamName = get('stream')
  const streamSubjects = get('stream-subjects')
  if ((streamName === undefined) !== (streamSubjects === undefined))
    throw new UsageError('--stream and --stream-subjects go together')
  if (streamName !== undefined && !/^[^\s.*>/\\]+$/.test(streamName))
    source.fail(
      'stream',
      `must be a JetStream stream name (no spaces, ".", "*", ">", "/", "\\"); got ${JSON.stringify(streamName)}`,
    )
  const subjects = streamSubjects?.split(',').map((subject) => subject.trim())
  if (subjects?.some((subject) => subject === '' || /\s/.test(subject) || /(^|\.)(\.|$)/.test(subject)))
    source.fail(
      'stream-subjects',
      `must be NATS subjects, comma separated; got ${JSON.stringify(streamSubjects)}`,
    )

  const subjectMap = parseSubjectMap(source, subjects)
  const natsAuth = natsAuthFrom({
    value: (name) => source.raw(name),
    label: (name) => source.label(name),
    servers: natsServers,
  })

  const backoff: RelayConfig['backoff'] = {}
  const baseMs = source.number('backoff-base-ms')
  if (baseMs !== undefined) backoff.baseMs = baseMs
  const maxMs = source.number('backoff-max-ms')
  if (maxMs !== undefined) backoff.maxMs = maxMs
  const jitter = source.number('backoff-jitter', { integer: false })
  if (jitter !== undefined) backoff.jitter = jitter
  const retention: RelayConfig['retention'] = {}
  const days = get('retention-days') === 'off' ? null : source.number('retention-days', { integer: false })
  if (days !== undefined) retention.sentOlderThanDays = days
  const stale = get('stale-minutes') === 'off' ? null : source.number('stale-minutes', { integer: false })
  if (stale !== undefined) retention.staleMinutes = stale
  const everyMs = source.number('maintenance-every-ms')
  if (everyMs !== undefined) retention.everyMs = everyMs
  const relayOptions = {
    workerId,
    batchSize: source.number('batch-size'),
    leaseMs: source.number('lease-ms'),
    concurrency: source.number('concurrency'),
    batchesInFlight: source.number('batches-in-flight'),
    keyRun: source.number('key-run'),
    // Checked by the relay below, which names the flag in its refusal.
    keyedDeadLetters: get('keyed-dead-letters') as KeyedDeadLetters | undefined,
    maxAttempts: source.number('max-attempts'),
    pollIntervalMs: source.number('poll-interval-ms'),
    minPollIntervalMs: source.number('min-poll-interval-ms'),
    maxBatchBytes: source.number('max-batch-bytes'),
    maxEventBytes: source.number('max-event-bytes'),
    backoff,
    retention,
  } satisfies Partial<OutboxRelayOptions>
  // The relay's limits are core's: build one with these options and report what it refuses
  // under the flags' names, so the CLI cannot accept what the relay would refuse later.
  try {
    new OutboxRelay({ ...inert, ...relayOptions })
  } catch (error) {
    if (!(error instanceof TxboxError)) throw error
    throw new ConfigurationError(source.inFlagTerms(error), { cause: error })
  }

  const publishTimeoutMs = source.number('publish-timeout-ms')
  // The publisher is built once NATS answers; its wait is a timer, so core's timer limit.
  if (publishTimeoutMs !== undefined)
    source.check('publish-timeout-ms', () => coreValidator.timerMs(publishTimeoutMs, 'timeoutMs', 1))
  const httpPort = source.number('http-port')
  if (httpPort !== undefined && (httpPort < 0 || httpPort > 65_535))
    source.fail('http-port', `must be a TCP port, 0..65535 (0: any free port); got ${httpPort}`)

  return {
    run: {
      store: {
        kind: kind as StoreKind,
        url,
        prefix: get('prefix'),
        schema: get('schema'),
        database: get('database'),
        wakeup: wakeup === 'on',
        preparedStatements: prepared === 'on',
        migrate: source.boolean('migrate'),
      },
      natsServers,
      ...relayOptions,
      publishTimeoutMs,
      stream: streamName === undefined || subjects === undefined ? undefined : { name: streamName, subjects },
      subjectMap,
      natsAuth,
      httpPort,
      logLevel,
      inFlagTerms: (error) => source.inFlagTerms(error),
    },
  }
}

/** How each flag's value is typed in a config file. */
const flagTypes = (name: string): 'string' | 'boolean' | 'on-off' | 'list' | 'subject-map' => {
  if (name === 'migrate') return 'boolean'
  if (name === 'wakeup' || name === 'prepared-statements') return 'on-off'
  if (name === 'nats' || name === 'stream-subjects') return 'list'
  if (name === 'subject-map') return 'subject-map'
  return 'string'
}

/**
 * `--subject-map` as `from=to,from=to` (flag or variable), or a table in the config file
 * (a list of `{ from, to }` or a mapping); checked by core's `SubjectMap`, and each target
 * must fall under `--stream-subjects` when the relay creates the stream.
 */
const parseSubjectMap = (
  source: Source,
  streamSubjects: string[] | undefined,
): SubjectMapEntry[] | undefined => {
  const structured = source.structured('subject-map')
  const raw = source.raw('subject-map')
  let table: unknown
  if (structured !== undefined) table = structured
  else if (raw === undefined) return undefined
  else
    table = raw.split(',').map((pair, index) => {
      const parts = pair.trim().split('=')
      if (parts.length !== 2)
        source.fail(
          'subject-map',
          `entry ${index + 1} ${JSON.stringify(pair.trim())} must be from=to (one "=", entries separated by ",")`,
        )
      return { from: parts[0] as string, to: parts[1] as string }
    })
  let map: SubjectMap
  try {
    map = new SubjectMap(table as SubjectMapEntry[])
  } catch (error) {
    if (!(error instanceof TxboxError)) throw error
    // Core names the option (`subjectMap entry 2 ...`); the user wrote the flag, variable or key.
    source.fail('subject-map', error.message.replace(/^\[txbox\] \[[^\]]*\] subjectMap ?/, ''))
  }
  if (streamSubjects !== undefined) {
    const uncovered = map.uncoveredBy(streamSubjects)
    if (uncovered !== undefined)
      source.fail(
        'subject-map',
        `${uncovered.replace(/^subjectMap /, '')} (${source.label('stream-subjects')})`,
      )
  }
  return [...map.entries]
}

/** Parses flags and variables; undefined for `--help`. Kept for programmatic callers. */
export const parseConfig = (argv: readonly string[], env: NodeJS.ProcessEnv): RelayConfig | undefined => {
  const request = parseCli(argv, env)
  if ('run' in request) return request.run
  return undefined
}
