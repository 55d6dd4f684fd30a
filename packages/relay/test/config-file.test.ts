import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import {
  CONFIG_FILE_KEYS,
  ENV_VARIABLES,
  FLAG_NAMES,
  helpText,
  parseCli,
  type RelayConfig,
  runRelayCli,
} from '../src/index.js'

const dir = mkdtempSync(join(tmpdir(), 'txbox-relay-config-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

let files = 0
const file = (text: string, extension = 'yaml'): string => {
  const path = join(dir, `f${files++}.${extension}`)
  writeFileSync(path, text)
  return path
}

const run = (argv: string[], env: Record<string, string> = {}): RelayConfig => {
  const request = parseCli(argv, env)
  if (!('run' in request)) throw new Error('expected a configuration')
  return request.run
}

const refusal = (argv: string[], env: Record<string, string> = {}): string => {
  try {
    parseCli(argv, env)
  } catch (error) {
    return (error as Error).message.replace(/^\[txbox\] \[relay\] /, '')
  }
  throw new Error('expected the configuration to be refused')
}

const base = 'store: sqlite\nurl: outbox.db\n'

describe('txbox-relay --config', () => {
  it('reads every kind of value from YAML, with a flag over a variable over the file', () => {
    const path = file(
      `${base}nats: [nats://a:4222, nats://b:4222]\nbatch-size: 250\nbackoff-jitter: 0.5\nwakeup: off\n` +
        'prepared-statements: false\nmigrate: true\nretention-days: off\nstream: ORDERS\n' +
        "stream-subjects: [orders.>, prod.>]\nsubject-map:\n  - { from: 'order.*', to: 'prod.orders.*' }\n",
    )
    const fromFile = run(['--config', path])
    expect(fromFile).toMatchObject({
      natsServers: ['nats://a:4222', 'nats://b:4222'],
      batchSize: 250,
      backoff: { jitter: 0.5 },
      retention: { sentOlderThanDays: null },
      stream: { name: 'ORDERS', subjects: ['orders.>', 'prod.>'] },
      subjectMap: [{ from: 'order.*', to: 'prod.orders.*' }],
      store: { kind: 'sqlite', url: 'outbox.db', wakeup: false, preparedStatements: false, migrate: true },
    })
    expect(run(['--config', path], { TXBOX_RELAY_BATCH_SIZE: '300' }).batchSize).toBe(300)
    expect(run(['--config', path, '--batch-size', '400'], { TXBOX_RELAY_BATCH_SIZE: '300' }).batchSize).toBe(
      400,
    )
    expect(run([], { TXBOX_RELAY_CONFIG: path, TXBOX_RELAY_URL: 'other.db' }).store.url).toBe('other.db')
  })

  it('reads JSON, and a subject map written as a mapping keeps its order', () => {
    const path = file(
      JSON.stringify({
        store: 'sqlite',
        url: 'outbox.db',
        'lease-ms': 45000,
        'subject-map': { 'user.created': 'production.users.created', 'audit.>': 'prod.audit.>' },
      }),
      'json',
    )
    const config = run(['--config', path])
    expect(config.leaseMs).toBe(45_000)
    expect(config.subjectMap).toEqual([
      { from: 'user.created', to: 'production.users.created' },
      { from: 'audit.>', to: 'prod.audit.>' },
    ])
  })

  it('refuses, naming the key, what the file gets wrong', () => {
    expect(refusal(['--config', file(`${base}batchSize: 10\n`)])).toMatch(
      /f\d+\.yaml has the unknown key "batchSize" \(did you mean batch-size\?\); keys are the flags' names: store, url/,
    )
    expect(refusal(['--config', file(`${base}help: true\n`)])).toMatch(/has the unknown key "help"/)
    expect(refusal(['--config', file(`${base}config: other.yaml\n`)])).toMatch(/has the unknown key "config"/)
    expect(refusal(['--config', file(`${base}lease-ms: 9999999999\n`)])).toMatch(
      /^\/.*f\d+\.yaml key lease-ms must be an integer from 1 to 2147483647/,
    )
    expect(refusal(['--config', file(`${base}batch-size: [1]\n`)])).toMatch(
      /key batch-size must be a string or a number; got a list$/,
    )
    expect(refusal(['--config', file(`${base}batch-size:\n`)])).toMatch(
      /key batch-size must be a string or a number; got null$/,
    )
    expect(refusal(['--config', file(`${base}migrate: yes\n`)])).toMatch(
      /key migrate must be 1, true, 0 or false; got "yes"$/,
    )
    expect(refusal(['--config', file(`${base}wakeup: 1\n`)])).toMatch(/key wakeup must be on or off; got 1$/)
    expect(refusal(['--config', file(`${base}nats: [nats://a:4222, 'x,y']\n`)])).toMatch(
      /key nats must be a list of non-empty strings without "," \(item 2 is "x,y"\)/,
    )
    expect(refusal(['--config', file(`${base}log-level: loud\n`)])).toMatch(
      /key log-level must be one of debug/,
    )
    expect(refusal(['--config', file(`${base}batch-size: 1\nbatch-size: 2\n`)])).toMatch(
      /is not valid YAML or JSON: .*unique/i,
    )
    expect(refusal(['--config', file(`${base}- a\n`)])).toMatch(/is not valid YAML or JSON/)
    expect(refusal(['--config', file('- store\n- url\n')])).toMatch(
      /must hold a mapping of option: value; got a list/,
    )
    expect(refusal(['--config', join(dir, 'missing.yaml')])).toMatch(
      /^--config ".*missing\.yaml" cannot be read: ENOENT/,
    )
    expect(refusal([], { TXBOX_RELAY_CONFIG: join(dir, 'missing.yaml') })).toMatch(
      /^TXBOX_RELAY_CONFIG ".*missing\.yaml" cannot be read: ENOENT/,
    )
  })

  it('refuses a subject map that can never work, naming the entry and where it came from', () => {
    expect(refusal(['--config', file(`${base}subject-map:\n  - { from: 'a.*', to: 'b.>' }\n`)])).toMatch(
      /key subject-map entry 1 \("a\.\*" -> "b\.>"\): to ends in '>' but from has no '>'/,
    )
    expect(refusal(['--store', 'sqlite', '--url', 'x.db', '--subject-map', 'a=b,c'])).toBe(
      '--subject-map entry 2 "c" must be from=to (one "=", entries separated by ",")',
    )
    expect(
      refusal(['--store', 'sqlite', '--url', 'x.db'], {
        TXBOX_RELAY_SUBJECT_MAP: 'orders.*=prod.*,orders.new=x',
      }),
    ).toMatch(/^TXBOX_RELAY_SUBJECT_MAP entry 2 \("orders\.new" -> "x"\) can never match: subjectMap entry 1/)
    expect(
      refusal([
        '--store',
        'sqlite',
        '--url',
        'x.db',
        '--stream',
        'S',
        '--stream-subjects',
        'prod.orders.*',
        '--subject-map',
        'orders.*=prod.orders.*,audit.>=prod.audit.>',
      ]),
    ).toBe(
      `--subject-map entry 2 ("audit.>" -> "prod.audit.>"): to is not covered by the stream's subjects "prod.orders.*", so JetStream would have no stream for it (--stream-subjects)`,
    )
    expect(
      run([
        '--store',
        'sqlite',
        '--url',
        'x.db',
        '--subject-map',
        'orders.*=prod.orders.*, user.created=prod.users',
      ]).subjectMap,
    ).toEqual([
      { from: 'orders.*', to: 'prod.orders.*' },
      { from: 'user.created', to: 'prod.users' },
    ])
  })

  it('reads secrets from *_FILE variables, without the final line break', () => {
    const url = file('postgres://relay:s3cr%40t@db:5432/app\n', 'secret')
    const password = file('pa ss\r\n', 'secret')
    const config = run(['--store', 'postgres'], {
      TXBOX_RELAY_URL_FILE: url,
      TXBOX_RELAY_NATS_USER: 'relay',
      TXBOX_RELAY_NATS_PASSWORD_FILE: password,
    })
    expect(config.store.url).toBe('postgres://relay:s3cr%40t@db:5432/app')
    expect(config.natsAuth).toMatchObject({ method: 'user-password', user: 'relay', password: 'pa ss' })
    expect(refusal(['--store', 'postgres'], { TXBOX_RELAY_URL_FILE: join(dir, 'nope') })).toMatch(
      /^TXBOX_RELAY_URL_FILE ".*nope" cannot be read: ENOENT/,
    )
    expect(
      refusal(['--store', 'postgres'], { TXBOX_RELAY_URL_FILE: url, TXBOX_RELAY_URL: 'postgres://x/y' }),
    ).toBe('TXBOX_RELAY_URL and TXBOX_RELAY_URL_FILE are both set: keep one')
    expect(refusal(['--store', 'postgres'], { TXBOX_RELAY_URL_FILE: file('mysql://x/y', 'secret') })).toMatch(
      /^TXBOX_RELAY_URL_FILE "mysql:\/\/x\/y" must start with postgres:/,
    )
    // Only secrets have a _FILE form: any other is a typo, refused like every unknown variable.
    expect(refusal(['--store', 'sqlite', '--url', 'x.db'], { TXBOX_RELAY_BATCH_SIZE_FILE: url })).toMatch(
      /^unknown variable TXBOX_RELAY_BATCH_SIZE_FILE/,
    )
  })

  it('checks the NATS authentication options before anything connects', () => {
    const sqlite = ['--store', 'sqlite', '--url', 'x.db']
    expect(refusal([...sqlite, '--nats-user', 'relay'])).toBe(
      '--nats-user needs --nats-user and --nats-password together',
    )
    expect(
      refusal([...sqlite, '--nats-token', 't'], {
        TXBOX_RELAY_NATS_USER: 'u',
        TXBOX_RELAY_NATS_PASSWORD: 'p',
      }),
    ).toBe('--nats-token and TXBOX_RELAY_NATS_USER are two ways to authenticate to NATS: give one')
    expect(refusal([...sqlite, '--nats', 'nats://u:p@h:4222', '--nats-token', 't'])).toBe(
      '--nats has credentials in a URL and --nats-token gives others: give one',
    )
    expect(refusal([...sqlite, '--nats-nkey', file('not a seed', 'nk')])).toMatch(
      /^--nats-nkey ".*\.nk" must hold an NKey user seed/,
    )
    expect(refusal([...sqlite, '--nats-creds', file('{}', 'creds')])).toMatch(
      /is not a NATS credentials file/,
    )
    expect(refusal([...sqlite, '--nats-tls-cert', file('x', 'pem')])).toBe(
      '--nats-tls-cert needs --nats-tls-cert and --nats-tls-key together',
    )
    expect(refusal([...sqlite, '--nats-tls-ca', join(dir, 'no-ca.pem')])).toMatch(
      /^--nats-tls-ca ".*no-ca\.pem" cannot be read: ENOENT/,
    )
    expect(refusal([...sqlite, '--nats-tls-ca', file('hello', 'pem')])).toMatch(/is not a PEM file/)
    expect(run([...sqlite, '--nats', 'nats://u:p@h:4222']).natsAuth.method).toBe('url')
    expect(run(sqlite).natsAuth).toEqual({ method: 'none' })
  })

  it('exits 2 at start with the message naming the key', async () => {
    const lines: string[] = []
    const code = await runRelayCli(['--config', file(`${base}subject-map: 'a.*=b.>'\n`)], {
      env: {},
      stderr: { write: (text: string) => lines.push(text) },
    })
    expect(code).toBe(2)
    expect(lines.join('')).toMatch(/key subject-map entry 1 \("a\.\*" -> "b\.>"\): to ends in '>'/)
  })

  it("accepts the README's config file example as written", () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
    const section = readme.split(/^### Config file$/m)[1] ?? ''
    const example = /^```yaml\n([\s\S]*?)^```$/m.exec(section)?.[1]
    expect(example).toBeDefined()
    const config = run(['--config', file(example as string)], {
      TXBOX_RELAY_URL: 'postgres://relay@db:5432/app',
    })
    expect(config.stream?.subjects).toEqual(['production.>'])
    expect(config.subjectMap).toHaveLength(3)
  })

  it('lists every option once, as a flag, a file key and a variable', () => {
    expect(FLAG_NAMES).toContain('subject-map')
    expect(CONFIG_FILE_KEYS).not.toContain('config')
    expect(CONFIG_FILE_KEYS).not.toContain('help')
    expect(CONFIG_FILE_KEYS.length).toBe(FLAG_NAMES.length - 3)
    expect(ENV_VARIABLES).toContain('TXBOX_RELAY_CONFIG')
    expect(ENV_VARIABLES).toContain('TXBOX_RELAY_NATS_PASSWORD_FILE')
    expect(ENV_VARIABLES).not.toContain('TXBOX_RELAY_BATCH_SIZE_FILE')
    for (const key of CONFIG_FILE_KEYS) expect(helpText()).toContain(`file key ${key}\n`)
  })
})
