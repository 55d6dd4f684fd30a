import { describe, expect, it } from 'vitest'
import { parseCli, redactUrl, runRelayCli } from '../src/index.js'

const sink = () => {
  const lines: string[] = []
  return { lines, text: () => lines.join(''), write: (text: string) => lines.push(text) }
}

const sqlite = ['--store', 'sqlite', '--url', 'outbox.db']

/** [what, argv, env, the start of what stderr must say]. Each must exit 2 at once. */
const refused: [string, string[], Record<string, string>, string][] = [
  [
    'a keyed dead-letter policy the relay does not know',
    [...sqlite, '--keyed-dead-letters', 'drop'],
    {},
    "--keyed-dead-letters must be 'block' or 'skip'; got \"drop\"",
  ],
  [
    'a key run of 0',
    [...sqlite, '--key-run', '0'],
    {},
    '--key-run must be an integer from 1 to 10000; got 0',
  ],
  [
    'a key run beyond the claim limit, from its variable',
    sqlite,
    { TXBOX_RELAY_KEY_RUN: '10001' },
    'TXBOX_RELAY_KEY_RUN must be an integer from 1 to 10000; got 10001',
  ],
  [
    'a lease the store would refuse',
    [...sqlite, '--lease-ms', '9999999999'],
    {},
    '--lease-ms must be an integer from 1 to 2147483647',
  ],
  [
    'the same from its variable',
    sqlite,
    { TXBOX_RELAY_LEASE_MS: '9999999999' },
    'TXBOX_RELAY_LEASE_MS must be an integer from 1 to 2147483647',
  ],
  [
    'a lease of 0',
    [...sqlite, '--lease-ms', '0'],
    {},
    '--lease-ms must be an integer from 1 to 2147483647; got 0',
  ],
  [
    'a lease beyond exact integers',
    [...sqlite, '--lease-ms', '1e20'],
    {},
    '--lease-ms must be an integer from 1 to 2147483647; got 100000000000000000000',
  ],
  [
    'a base delay beyond exact integers',
    [...sqlite, '--backoff-base-ms', '1e20'],
    {},
    '--backoff-base-ms must be an integer from 0 to 9007199254740991; got 100000000000000000000',
  ],
  [
    'a base delay above the default ceiling',
    [...sqlite, '--backoff-base-ms', '90000'],
    {},
    '--backoff-base-ms 90000 is larger than the default --backoff-max-ms 60000',
  ],
  [
    'a base delay above its ceiling',
    [...sqlite, '--backoff-base-ms', '5000'],
    { TXBOX_RELAY_BACKOFF_MAX_MS: '1000' },
    '--backoff-base-ms 5000 is larger than TXBOX_RELAY_BACKOFF_MAX_MS 1000',
  ],
  [
    'a ceiling under the default base',
    [...sqlite, '--backoff-max-ms', '10'],
    {},
    'the default --backoff-base-ms 1000 is larger than --backoff-max-ms 10',
  ],
  ['a jitter above 1', [...sqlite, '--backoff-jitter', '2'], {}, '--backoff-jitter must be between 0 and 1'],
  [
    'a batch of 0',
    [...sqlite, '--batch-size', '0'],
    {},
    '--batch-size must be an integer from 1 to 10000; got 0',
  ],
  [
    "a batch above core's limit",
    [...sqlite, '--batch-size', '10001'],
    {},
    '--batch-size must be an integer from 1 to 10000; got 10001',
  ],
  [
    'a fractional batch',
    [...sqlite, '--batch-size', '2.5'],
    {},
    '--batch-size must be an integer; got "2.5"',
  ],
  [
    "a concurrency above core's limit",
    [...sqlite, '--concurrency', '10001'],
    {},
    '--concurrency must be an integer from 1 to 10000',
  ],
  ['no attempts', [...sqlite, '--max-attempts', '0'], {}, '--max-attempts must be an integer from 1 to'],
  [
    'a negative poll interval',
    [...sqlite, '--poll-interval-ms=-1'],
    {},
    '--poll-interval-ms must be a number of milliseconds from 0 to 2147483647',
  ],
  [
    'a poll interval no timer can wait',
    [...sqlite, '--poll-interval-ms', '3000000000'],
    {},
    '--poll-interval-ms must be a number of milliseconds from 0 to 2147483647 (the longest timer Node can wait); got 3000000000',
  ],
  [
    'a negative maintenance interval',
    sqlite,
    { TXBOX_RELAY_MAINTENANCE_EVERY_MS: '-5' },
    'TXBOX_RELAY_MAINTENANCE_EVERY_MS must be a finite number >= 0; got -5',
  ],
  [
    'a publish timeout of 0',
    [...sqlite, '--publish-timeout-ms', '0'],
    {},
    '--publish-timeout-ms must be a number of milliseconds from 1 to 2147483647',
  ],
  [
    'a publish timeout no timer can wait',
    [...sqlite, '--publish-timeout-ms', '3000000000'],
    {},
    '--publish-timeout-ms must be a number of milliseconds from 1 to 2147483647',
  ],
  [
    'a claim that may hold no bytes',
    [...sqlite, '--max-batch-bytes', '0'],
    {},
    '--max-batch-bytes must be an integer from 1 to 9007199254740991; got 0',
  ],
  [
    'a claim bound in a word',
    sqlite,
    { TXBOX_RELAY_MAX_BATCH_BYTES: '128MiB' },
    'TXBOX_RELAY_MAX_BATCH_BYTES must be a number; got "128MiB"',
  ],
  [
    'an event size of 0',
    sqlite,
    { TXBOX_RELAY_MAX_EVENT_BYTES: '0' },
    'TXBOX_RELAY_MAX_EVENT_BYTES must be a positive integer (bytes of the NATS message: payload + headers); got 0',
  ],
  [
    'a fractional event size',
    [...sqlite, '--max-event-bytes', '1.5'],
    {},
    '--max-event-bytes must be an integer; got "1.5"',
  ],
  [
    'a retention with no valid cutoff date',
    [...sqlite, '--retention-days', '1e300'],
    {},
    '--retention-days must be small enough that now minus it is a valid date',
  ],
  [
    'a negative retention',
    [...sqlite, '--retention-days=-1'],
    {},
    '--retention-days must be a finite number >= 0',
  ],
  [
    'a stale age with no valid cutoff date',
    [...sqlite, '--stale-minutes', '1e300'],
    {},
    '--stale-minutes must be small enough',
  ],
  [
    'a word for a number',
    [...sqlite, '--stale-minutes', 'ten'],
    {},
    '--stale-minutes must be a number; got "ten"',
  ],
  ['an empty number', sqlite, { TXBOX_RELAY_BATCH_SIZE: ' ' }, 'TXBOX_RELAY_BATCH_SIZE must be a number'],
  ['a port out of range', [...sqlite, '--http-port', '70000'], {}, '--http-port must be a TCP port'],
  [
    'a worker id over 255 characters',
    [...sqlite, '--worker-id', 'w'.repeat(256)],
    {},
    '--worker-id must be a non-empty string of at most 255 characters',
  ],
  [
    'a wake-up that is neither on nor off',
    [...sqlite, '--wakeup', 'maybe'],
    {},
    '--wakeup must be on or off',
  ],
  [
    'prepared statements neither on nor off',
    [...sqlite, '--prepared-statements', 'sometimes'],
    {},
    '--prepared-statements must be on or off',
  ],
  [
    'an unknown log level',
    sqlite,
    { TXBOX_RELAY_LOG_LEVEL: 'loud' },
    'TXBOX_RELAY_LOG_LEVEL must be one of debug, info, warn, error',
  ],
  [
    'a migrate variable that is not a boolean',
    sqlite,
    { TXBOX_RELAY_MIGRATE: 'yes' },
    'TXBOX_RELAY_MIGRATE must be 1, true, 0 or false',
  ],
  ['a misspelt variable', sqlite, { TXBOX_RELAY_BATCHSIZE: '5' }, 'unknown variable TXBOX_RELAY_BATCHSIZE'],
  [
    'an unknown store from its variable',
    ['--url', 'x'],
    { TXBOX_RELAY_STORE: 'oracle' },
    'TXBOX_RELAY_STORE must be one of sqlite, postgres',
  ],
  [
    'a stream name with a dot',
    [...sqlite, '--stream', 'A.B', '--stream-subjects', 'a.>'],
    {},
    '--stream must be a JetStream stream name',
  ],
  [
    'an empty subject token',
    [...sqlite, '--stream', 'A', '--stream-subjects', 'a..b'],
    {},
    '--stream-subjects must be NATS subjects',
  ],
  [
    'a NATS URL that does not parse',
    [...sqlite, '--nats', 'nats://[bad'],
    {},
    '--nats "nats://[bad" is not a valid URL',
  ],
  [
    'a NATS URL of another scheme',
    sqlite,
    { TXBOX_RELAY_NATS: 'http://127.0.0.1:4222' },
    'TXBOX_RELAY_NATS "http://127.0.0.1:4222" must start with nats:// or tls://',
  ],
  [
    'an empty NATS server in the list',
    [...sqlite, '--nats', 'nats://a:4222,,nats://b:4222'],
    {},
    '--nats has an empty server',
  ],
  [
    'a PostgreSQL URL that does not parse',
    ['--store', 'postgres', '--url', 'postgres://[bad'],
    {},
    '--url "postgres://[bad" is not a valid URL (expected postgres://... or postgresql://...)',
  ],
  [
    'a PostgreSQL URL of another scheme',
    ['--store', 'postgres', '--url', 'mysql://db/app'],
    {},
    '--url "mysql://db/app" must start with postgres:// or postgresql://',
  ],
  [
    'a MySQL password with a broken escape',
    ['--store', 'mysql'],
    { TXBOX_RELAY_URL: 'mysql://app:s3cr%zz@db/app' },
    'TXBOX_RELAY_URL "mysql://app:***@db/app" has a password with a malformed percent escape',
  ],
  [
    'a MongoDB URL of another scheme',
    ['--store', 'mongodb', '--url', 'http://db:27017'],
    {},
    '--url "http://db:27017" must start with mongodb:// or mongodb+srv://',
  ],
  [
    'a Redis URL that does not parse',
    ['--store', 'redis', '--url', 'redis://[bad'],
    {},
    '--url "redis://[bad" is not a valid URL',
  ],
  [
    'a DynamoDB endpoint of another scheme',
    ['--store', 'dynamodb', '--url', 'dynamodb://local'],
    {},
    '--url "dynamodb://local" must start with http:// or https://',
  ],
  [
    'a URL for SQLite',
    ['--store', 'sqlite', '--url', 'postgres://db/app'],
    {},
    '--url "postgres://db/app" is a URL, but --store sqlite takes the path',
  ],
]

describe('txbox-relay refuses configuration that can never work, naming the flag or variable', () => {
  it.each(refused)('%s', async (_what, argv, env, message) => {
    const stderr = sink()
    expect(await runRelayCli(argv, { env, stderr })).toBe(2)
    expect(stderr.text()).toContain(`[txbox] [relay] ${message}`)
  })

  it('never prints a password it refuses', async () => {
    const stderr = sink()
    await runRelayCli(['--store', 'mysql', '--url', 'mysql://app:s3cr%zz@db/app'], { env: {}, stderr })
    expect(stderr.text()).not.toContain('s3cr')
  })

  it('accepts the limits themselves', () => {
    const request = parseCli(
      [
        ...sqlite,
        '--lease-ms',
        '2147483647',
        '--batch-size',
        '10000',
        '--poll-interval-ms',
        '0',
        '--backoff-base-ms',
        '60000',
        '--nats',
        '127.0.0.1:4222, tls://nats.internal:4222',
        '--retention-days',
        'off',
        '--max-batch-bytes',
        '1',
        '--publish-timeout-ms',
        '2147483647',
        '--keyed-dead-letters',
        'skip',
        '--key-run',
        '10000',
      ],
      {
        TXBOX_RELAY_MIGRATE: 'false',
        TXBOX_RELAY_HTTP_PORT: '0',
        TXBOX_RELAY_MAX_EVENT_BYTES: '9007199254740991',
        // Maintenance is scheduled by the clock, not a timer: a long interval works.
        TXBOX_RELAY_MAINTENANCE_EVERY_MS: '3000000000',
      },
    )
    expect(request).toMatchObject({
      run: {
        leaseMs: 2_147_483_647,
        batchSize: 10_000,
        pollIntervalMs: 0,
        backoff: { baseMs: 60_000 },
        natsServers: ['127.0.0.1:4222', 'tls://nats.internal:4222'],
        retention: { sentOlderThanDays: null, everyMs: 3_000_000_000 },
        maxBatchBytes: 1,
        maxEventBytes: Number.MAX_SAFE_INTEGER,
        publishTimeoutMs: 2_147_483_647,
        keyedDeadLetters: 'skip',
        keyRun: 10_000,
        httpPort: 0,
        store: { migrate: false },
      },
    })
  })
})

describe('redactUrl', () => {
  it.each([
    ['postgres://app:s3cret@db:5432/app', 'postgres://app:***@db:5432/app'],
    [
      'mongodb://app:p@ss:w0rd@h1:27017,h2:27017/app?authSource=admin',
      'mongodb://app:***@h1:27017,h2:27017/app?authSource=admin',
    ],
    ['redis://:s3cret@cache:6379/0', 'redis://:***@cache:6379/0'],
    ['mysql://db/app?password=s3cret&ssl=true', 'mysql://db/app?password=***&ssl=true'],
    ['nats://127.0.0.1:4222', 'nats://127.0.0.1:4222'],
    ['/var/lib/app/outbox.db', '/var/lib/app/outbox.db'],
  ])('%s', (url, expected) => {
    expect(redactUrl(url)).toBe(expected)
  })
})
