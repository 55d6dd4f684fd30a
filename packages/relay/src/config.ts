import { parseArgs } from 'node:util'
import { STORE_KINDS, type StoreConfig, type StoreKind } from './stores.js'

/** Every flag, its env variable (`TXBOX_RELAY_<NAME>`), and its help line. */
const FLAGS = {
  store: { type: 'string', help: `the store: ${STORE_KINDS.join(' | ')} (required)` },
  url: { type: 'string', help: 'the database URL; for sqlite the database file path (required)' },
  nats: { type: 'string', help: 'NATS server URL(s), comma separated (default nats://127.0.0.1:4222)' },
  'worker-id': { type: 'string', help: "this relay's claim owner (default relay-<host>-<pid>)" },
  'batch-size': { type: 'string', help: 'events per claim (default 100)' },
  'lease-ms': { type: 'string', help: 'claim lease (default 30000)' },
  concurrency: { type: 'string', help: 'publishes in flight per batch (default 32)' },
  'max-attempts': { type: 'string', help: 'publish attempts before dead letter (default 10)' },
  'poll-interval-ms': { type: 'string', help: 'wait when nothing is due (default 1000)' },
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
  prefix: {
    type: 'string',
    help: 'table prefix (sqlite, postgres, mysql), collection prefix (mongodb), key prefix (redis), table name (dynamodb)',
  },
  schema: { type: 'string', help: 'PostgreSQL schema (default public)' },
  database: { type: 'string', help: "MongoDB database (default: the URL's)" },
  wakeup: { type: 'string', help: 'PostgreSQL LISTEN/NOTIFY wake-up: on | off (default on)' },
  migrate: { type: 'boolean', help: "run the store's migrate() first" },
  stream: { type: 'string', help: 'create this JetStream stream if missing (with --stream-subjects)' },
  'stream-subjects': { type: 'string', help: 'the subjects of --stream, comma separated' },
  'http-port': { type: 'string', help: 'serve GET /metrics (Prometheus) and GET /health on this port' },
  'log-level': { type: 'string', help: 'debug | info | warn | error (default info); JSON lines on stderr' },
  help: { type: 'boolean', help: 'show this help' },
} as const

type FlagName = keyof typeof FLAGS

/** A usage error: the CLI prints it with the help and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError'
}

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/** The relay's configuration after flags and environment. */
export interface RelayConfig {
  store: StoreConfig
  natsServers: string[]
  workerId: string | undefined
  batchSize: number | undefined
  leaseMs: number | undefined
  concurrency: number | undefined
  maxAttempts: number | undefined
  pollIntervalMs: number | undefined
  backoff: { baseMs?: number; maxMs?: number; jitter?: number }
  retention: { sentOlderThanDays?: number | null; staleMinutes?: number | null; everyMs?: number }
  publishTimeoutMs: number | undefined
  stream: { name: string; subjects: string[] } | undefined
  httpPort: number | undefined
  logLevel: LogLevel
}

export const envName = (flag: string): string => `TXBOX_RELAY_${flag.toUpperCase().replace(/-/g, '_')}`

export const helpText = (): string => {
  const lines = Object.entries(FLAGS).map(
    ([name, flag]) => `  --${name.padEnd(22)} ${flag.help}\n  ${''.padEnd(24)} env ${envName(name)}`,
  )
  return `Usage: txbox-relay --store <kind> --url <url> [--nats nats://host:4222] [options]

Publishes a txbox outbox to NATS JetStream until SIGTERM or SIGINT, then drains and exits 0.
Every flag can also come from the environment; a flag wins over its variable.

${lines.join('\n')}
`
}

const number = (
  name: string,
  raw: string | undefined,
  { integer = true, min = 0 } = {},
): number | undefined => {
  if (raw === undefined) return undefined
  const value = Number(raw)
  if (raw.trim() === '' || !Number.isFinite(value) || (integer && !Number.isInteger(value)) || value < min) {
    throw new UsageError(
      `--${name} must be ${integer ? 'an integer' : 'a number'} >= ${min}; got ${JSON.stringify(raw)}`,
    )
  }
  return value
}

const nullable = (name: string, raw: string | undefined): number | null | undefined =>
  raw === 'off' ? null : number(name, raw, { integer: false })

/** Parses flags, falling back to `TXBOX_RELAY_*` variables. Returns undefined for --help. */
export const parseConfig = (argv: readonly string[], env: NodeJS.ProcessEnv): RelayConfig | undefined => {
  let values: Record<string, string | boolean | undefined>
  try {
    values = parseArgs({
      args: [...argv],
      options: Object.fromEntries(Object.entries(FLAGS).map(([name, flag]) => [name, { type: flag.type }])),
      allowPositionals: false,
      strict: true,
    }).values
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error))
  }
  if (values.help) return undefined
  const get = (name: FlagName): string | undefined => {
    const value = values[name]
    if (typeof value === 'string') return value
    return env[envName(name)]
  }
  const flag = (name: FlagName): boolean => {
    if (values[name] === true) return true
    const raw = env[envName(name)]
    return raw === '1' || raw === 'true'
  }
  const kind = get('store')
  if (kind === undefined) throw new UsageError('--store is required')
  if (!(STORE_KINDS as readonly string[]).includes(kind))
    throw new UsageError(`--store must be one of ${STORE_KINDS.join(', ')}; got ${JSON.stringify(kind)}`)
  const url = get('url')
  if (url === undefined || url === '') throw new UsageError('--url is required')
  const wakeup = get('wakeup') ?? 'on'
  if (wakeup !== 'on' && wakeup !== 'off') throw new UsageError('--wakeup must be on or off')
  const logLevel = (get('log-level') ?? 'info') as LogLevel
  if (!LOG_LEVELS.includes(logLevel))
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`)
  const streamName = get('stream')
  const streamSubjects = get('stream-subjects')
  if ((streamName === undefined) !== (streamSubjects === undefined))
    throw new UsageError('--stream and --stream-subjects go together')
  const backoff: RelayConfig['backoff'] = {}
  const baseMs = number('backoff-base-ms', get('backoff-base-ms'))
  const maxMs = number('backoff-max-ms', get('backoff-max-ms'))
  const jitter = number('backoff-jitter', get('backoff-jitter'), { integer: false })
  if (baseMs !== undefined) backoff.baseMs = baseMs
  if (maxMs !== undefined) backoff.maxMs = maxMs
  if (jitter !== undefined) backoff.jitter = jitter
  const retention: RelayConfig['retention'] = {}
  const days = nullable('retention-days', get('retention-days'))
  const stale = nullable('stale-minutes', get('stale-minutes'))
  const everyMs = number('maintenance-every-ms', get('maintenance-every-ms'))
  if (days !== undefined) retention.sentOlderThanDays = days
  if (stale !== undefined) retention.staleMinutes = stale
  if (everyMs !== undefined) retention.everyMs = everyMs
  return {
    store: {
      kind: kind as StoreKind,
      url,
      prefix: get('prefix'),
      schema: get('schema'),
      database: get('database'),
      wakeup: wakeup === 'on',
      migrate: flag('migrate'),
    },
    natsServers: (get('nats') ?? 'nats://127.0.0.1:4222').split(',').map((server) => server.trim()),
    workerId: get('worker-id'),
    batchSize: number('batch-size', get('batch-size'), { min: 1 }),
    leaseMs: number('lease-ms', get('lease-ms'), { min: 1 }),
    concurrency: number('concurrency', get('concurrency'), { min: 1 }),
    maxAttempts: number('max-attempts', get('max-attempts'), { min: 1 }),
    pollIntervalMs: number('poll-interval-ms', get('poll-interval-ms')),
    backoff,
    retention,
    publishTimeoutMs: number('publish-timeout-ms', get('publish-timeout-ms'), { min: 1 }),
    stream:
      streamName === undefined || streamSubjects === undefined
        ? undefined
        : { name: streamName, subjects: streamSubjects.split(',').map((subject) => subject.trim()) },
    httpPort: number('http-port', get('http-port')),
    logLevel,
  }
}
