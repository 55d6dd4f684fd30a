import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type ConnectionOptions, connect, credsAuthenticator, nkeyAuthenticator, nkeys } from 'nats'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openStore, runRelayCli } from '../src/index.js'
import { freePort, NatsServerProcess, natsServerAvailable } from './harness.js'

// Each authentication method against a private nats-server configured for it (never the
// shared one): the relay connects with what the flags say, creates the stream, publishes to
// the mapped subject; the same server refuses wrong credentials, which the relay reports
// as NATS not reachable (only the server can judge credentials) and still stops with 0.

const required = process.env.TXBOX_REQUIRE_ALL === '1'
const available = natsServerAvailable()
const dir = mkdtempSync(join(tmpdir(), 'txbox-relay-nats-auth-'))
const servers: NatsServerProcess[] = []
afterAll(async () => {
  await Promise.all(servers.map((server) => server.stop()))
  rmSync(dir, { recursive: true, force: true })
})

const write = (name: string, text: string): string => {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

const startServer = async (name: string, config: string): Promise<NatsServerProcess> => {
  const server = new NatsServerProcess(await freePort(), join(dir, `${name}-js`), [
    '-c',
    write(`${name}.conf`, config),
  ])
  servers.push(server)
  await server.start()
  return server
}

const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })

/** A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA. */
const makeCertificates = () => {
  openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=txbox test CA',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
  )
  for (const [name, extra] of [
    ['server', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
    ['client', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    openssl(
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      `/CN=${name}`,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
    )
    write(`${name}.ext`, `${extra}\n`)
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.pem`,
    )
  }
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'client.pem'), key: join(dir, 'client.key'), dir }
}

const base64url = (bytes: Uint8Array | string): string =>
  Buffer.from(typeof bytes === 'string' ? Buffer.from(bytes) : bytes).toString('base64url')

/** A NATS JWT (v2) signed by `issuer`, the way nsc writes them. */
const jwt = (
  issuer: ReturnType<typeof nkeys.createOperator>,
  subject: string,
  name: string,
  nats: object,
): string => {
  const header = base64url(JSON.stringify({ typ: 'JWT', alg: 'ed25519-nkey' }))
  const claims = base64url(
    JSON.stringify({
      jti: base64url(Buffer.from(`${subject}-${Date.now()}`))
        .toUpperCase()
        .slice(0, 52),
      iat: Math.floor(Date.now() / 1000),
      iss: issuer.getPublicKey(),
      name,
      sub: subject,
      nats: { ...nats, version: 2 },
    }),
  )
  return `${header}.${claims}.${base64url(issuer.sign(Buffer.from(`${header}.${claims}`)))}`
}

/** An operator, an account with JetStream, and a user's creds file (what `nsc` would make). */
const makeOperator = () => {
  const operator = nkeys.createOperator()
  const account = nkeys.createAccount()
  // JetStream in operator mode needs a system account.
  const system = nkeys.createAccount()
  const user = nkeys.createUser()
  const unlimited = {
    subs: -1,
    data: -1,
    payload: -1,
    imports: -1,
    exports: -1,
    wildcards: true,
    conn: -1,
    leaf: -1,
  }
  const operatorJwt = jwt(operator, operator.getPublicKey(), 'txbox-test', { type: 'operator' })
  const accountJwt = jwt(operator, account.getPublicKey(), 'relay-account', {
    type: 'account',
    limits: { ...unlimited, mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 },
    default_permissions: { pub: {}, sub: {} },
  })
  const systemJwt = jwt(operator, system.getPublicKey(), 'SYS', {
    type: 'account',
    limits: unlimited,
    default_permissions: { pub: {}, sub: {} },
  })
  const userJwt = jwt(account, user.getPublicKey(), 'relay', {
    type: 'user',
    pub: {},
    sub: {},
    subs: -1,
    data: -1,
    payload: -1,
  })
  const seed = new TextDecoder().decode(user.getSeed())
  const creds = `-----BEGIN NATS USER JWT-----\n${userJwt}\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n${seed}\n------END USER NKEY SEED------\n`
  return {
    operatorJwt,
    creds,
    preload: `system_account: ${system.getPublicKey()}\nresolver_preload: { ${account.getPublicKey()}: ${accountJwt}, ${system.getPublicKey()}: ${systemJwt} }\n`,
  }
}

let sequence = 0

/**
 * Runs the relay in-process on a fresh SQLite outbox with one event on `order.created`,
 * mapped to `prod.orders.created`, until the event is sent (or `expectRefusal`: until the
 * relay logged that NATS refused it). Returns the exit code and the log.
 */
const relayOnce = async (
  server: NatsServerProcess,
  authArgs: string[],
  readerOptions: Partial<ConnectionOptions>,
  { expectRefusal = false, env = {} as Record<string, string> } = {},
): Promise<{ code: number; log: string }> => {
  const id = ++sequence
  const url = join(dir, `outbox-${id}.db`)
  const stream = `AUTH_${id}`
  const store = await openStore({ kind: 'sqlite', url, migrate: true })
  await store.outbox.findOrCreate({
    eventId: `auth-${id}`,
    subject: `order${id}.created`,
    payload: '{"n":1}',
  })
  const lines: string[] = []
  const stop = new AbortController()
  const exit = runRelayCli(
    [
      '--store',
      'sqlite',
      '--url',
      url,
      '--nats',
      server.url,
      ...authArgs,
      '--stream',
      stream,
      '--stream-subjects',
      `prod${id}.>`,
      '--subject-map',
      `order${id}.*=prod${id}.orders.*`,
      '--poll-interval-ms',
      '50',
      '--log-level',
      'debug',
    ],
    { env, stderr: { write: (text: string) => lines.push(text) }, signal: stop.signal },
  )
  try {
    const deadline = Date.now() + 30_000
    for (;;) {
      if (
        expectRefusal
          ? lines.join('').includes('"msg":"NATS not reachable; retrying"')
          : (await store.outbox.get(`auth-${id}`))?.status === 'sent'
      )
        break
      if (Date.now() > deadline) throw new Error(`relay did not get there within 30 s:\n${lines.join('')}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  } finally {
    stop.abort()
  }
  const code = await exit
  await store.close()
  if (!expectRefusal) {
    const nc = await connect({ servers: server.url, ...readerOptions })
    try {
      const jsm = await nc.jetstreamManager()
      const message = await jsm.streams.getMessage(stream, { last_by_subj: `prod${id}.orders.created` })
      expect(message.header.get('Nats-Msg-Id')).toBe(`auth-${id}`)
    } finally {
      await nc.close()
    }
  }
  return { code, log: lines.join('') }
}

describe.skipIf(!available && !required)(
  'txbox-relay NATS authentication (a private nats-server per method)',
  () => {
    let users: NatsServerProcess
    let tokenServer: NatsServerProcess
    const userKey = nkeys.createUser()
    const seedFile = write('relay.nk', `${new TextDecoder().decode(userKey.getSeed())}\n`)

    beforeAll(async () => {
      if (!available) throw new Error('TXBOX_REQUIRE_ALL=1 but nats-server cannot be run')
      users = await startServer(
        'users',
        `authorization { users = [ { user: relay, password: "s3cret pw" }, { nkey: ${userKey.getPublicKey()} } ] }\n`,
      )
      tokenServer = await startServer('token', 'authorization { token: "tok-123" }\n')
    }, 60_000)

    it('user and password, the password from a *_FILE variable', async () => {
      const passwordFile = write('password', 's3cret pw\n')
      const { code, log } = await relayOnce(
        users,
        ['--nats-user', 'relay'],
        { user: 'relay', pass: 's3cret pw' },
        {
          env: { TXBOX_RELAY_NATS_PASSWORD_FILE: passwordFile },
        },
      )
      expect(code, log).toBe(0)
      expect(log).toContain('"natsAuth":"user-password"')
      expect(log).not.toContain('s3cret')
    }, 60_000)

    it('a wrong password is retried as NATS not reachable, naming the refusal, and a stop still exits 0', async () => {
      const { code, log } = await relayOnce(
        users,
        ['--nats-user', 'relay', '--nats-password', 'wrong'],
        {},
        { expectRefusal: true },
      )
      expect(code).toBe(0)
      expect(log).toMatch(/"msg":"NATS not reachable; retrying".*Authorization Violation/)
    }, 60_000)

    it('an NKey seed file', async () => {
      const { code, log } = await relayOnce(users, ['--nats-nkey', seedFile], {
        authenticator: nkeyAuthenticator(userKey.getSeed()),
      })
      expect(code, log).toBe(0)
      expect(log).toContain('"natsAuth":"nkey"')
    }, 60_000)

    it('a token', async () => {
      const { code, log } = await relayOnce(
        tokenServer,
        [],
        { token: 'tok-123' },
        {
          env: { TXBOX_RELAY_NATS_TOKEN: 'tok-123' },
        },
      )
      expect(code, log).toBe(0)
      const refused = await relayOnce(tokenServer, ['--nats-token', 'tok-999'], {}, { expectRefusal: true })
      expect(refused.code).toBe(0)
    }, 60_000)

    it('a creds file (operator mode: user JWT and seed)', async () => {
      const { operatorJwt, preload, creds } = makeOperator()
      const credsFile = write('relay.creds', creds)
      const server = await startServer('operator', `operator: ${operatorJwt}\nresolver: MEMORY\n${preload}`)
      const { code, log } = await relayOnce(server, ['--nats-creds', credsFile], {
        authenticator: credsAuthenticator(new TextEncoder().encode(creds)),
      })
      expect(code, log).toBe(0)
      expect(log).toContain('"natsAuth":"creds"')
    }, 60_000)

    it('TLS with a client certificate the server verifies', async () => {
      const certs = makeCertificates()
      const server = await startServer(
        'tls',
        `tls { cert_file: "${join(certs.dir, 'server.pem')}", key_file: "${join(certs.dir, 'server.key')}", ca_file: "${certs.ca}", verify: true }\n`,
      )
      const tls = { caFile: certs.ca, certFile: certs.cert, keyFile: certs.key }
      const { code, log } = await relayOnce(
        server,
        ['--nats-tls-ca', certs.ca, '--nats-tls-cert', certs.cert, '--nats-tls-key', certs.key],
        { tls },
      )
      expect(code, log).toBe(0)
      expect(log).toContain('"natsTls":true')
      // Without the client certificate the server refuses the handshake.
      const refused = await relayOnce(server, ['--nats-tls-ca', certs.ca], {}, { expectRefusal: true })
      expect(refused.code).toBe(0)
    }, 90_000)
  },
)
