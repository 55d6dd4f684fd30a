import { readFileSync } from 'node:fs'
import type { ConnectionOptions } from 'nats'
import { readSecretFile } from './config-file.js'
import { ConfigurationError } from './errors.js'

/** How the relay authenticates to NATS, read from the flags, checked before anything connects. */
export interface NatsAuth {
  /** `url`: credentials in a NATS URL's userinfo, which nats.js uses as they are. */
  method: 'none' | 'url' | 'user-password' | 'token' | 'nkey' | 'creds'
  user?: string | undefined
  password?: string | undefined
  token?: string | undefined
  /** The NKey user seed (`SU...`) read from `--nats-nkey`. */
  nkeySeed?: string | undefined
  /** The content of `--nats-creds`. */
  creds?: string | undefined
  /** TLS files; any of them turns TLS on (the server's certificate is then always verified). */
  tls?:
    | { caFile?: string | undefined; certFile?: string | undefined; keyFile?: string | undefined }
    | undefined
}

type AuthFlag =
  | 'nats-user'
  | 'nats-password'
  | 'nats-token'
  | 'nats-nkey'
  | 'nats-creds'
  | 'nats-tls-ca'
  | 'nats-tls-cert'
  | 'nats-tls-key'

export interface AuthSource {
  value(name: AuthFlag): string | undefined
  /** The flag, variable or file key that set it, for messages. */
  label(name: AuthFlag | 'nats'): string
  servers: readonly string[]
}

const readFile = (label: string, path: string): string => {
  try {
    return readFileSync(path, 'utf8')
  } catch (error) {
    throw new ConfigurationError(
      `${label} ${JSON.stringify(path)} cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      { cause: error },
    )
  }
}

const hasUserinfo = (server: string): boolean => /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(server)

/**
 * Reads and checks the NATS authentication flags: one method at most (user and password
 * go together), files that exist and hold what their flag says, a TLS certificate with its
 * key. Wrong credentials are not found here: only the server can say, so they show as
 * failed connection attempts, like an unreachable server.
 */
export const natsAuthFrom = (source: AuthSource): NatsAuth => {
  const fail = (name: AuthFlag | 'nats', message: string): never => {
    throw new ConfigurationError(`${source.label(name)} ${message}`)
  }
  const user = source.value('nats-user')
  const password = source.value('nats-password')
  const token = source.value('nats-token')
  const nkeyPath = source.value('nats-nkey')
  const credsPath = source.value('nats-creds')
  if ((user === undefined) !== (password === undefined))
    fail(user === undefined ? 'nats-password' : 'nats-user', 'needs --nats-user and --nats-password together')
  const methods = (
    [
      ['nats-user', user],
      ['nats-token', token],
      ['nats-nkey', nkeyPath],
      ['nats-creds', credsPath],
    ] as const
  ).filter(([, value]) => value !== undefined)
  const [first, second] = methods
  if (first !== undefined && second !== undefined)
    fail(second[0], `and ${source.label(first[0])} are two ways to authenticate to NATS: give one`)
  if (first !== undefined && source.servers.some(hasUserinfo))
    fail('nats', `has credentials in a URL and ${source.label(first[0])} gives others: give one`)

  const auth: NatsAuth = { method: source.servers.some(hasUserinfo) ? 'url' : 'none' }
  if (user !== undefined && password !== undefined) {
    if (user === '') fail('nats-user', 'is empty')
    Object.assign(auth, { method: 'user-password', user, password })
  }
  if (token !== undefined) {
    if (token === '') fail('nats-token', 'is empty')
    Object.assign(auth, { method: 'token', token })
  }
  if (nkeyPath !== undefined) {
    const seed = readSecretFile(source.label('nats-nkey'), nkeyPath).trim()
    // A user seed: 'S' (seed) + 'U' (user) and 56 more base32 characters.
    if (!/^SU[A-Z2-7]{56}$/.test(seed))
      fail(
        'nats-nkey',
        `${JSON.stringify(nkeyPath)} must hold an NKey user seed (58 characters starting with SU)`,
      )
    Object.assign(auth, { method: 'nkey', nkeySeed: seed })
  }
  if (credsPath !== undefined) {
    // As written: nats.js finds each block by the line break after its END line.
    const creds = readFile(source.label('nats-creds'), credsPath)
    if (!creds.includes('BEGIN NATS USER JWT') || !creds.includes('BEGIN USER NKEY SEED'))
      fail(
        'nats-creds',
        `${JSON.stringify(credsPath)} is not a NATS credentials file (it needs a NATS USER JWT and a USER NKEY SEED block)`,
      )
    Object.assign(auth, { method: 'creds', creds })
  }

  const caFile = source.value('nats-tls-ca')
  const certFile = source.value('nats-tls-cert')
  const keyFile = source.value('nats-tls-key')
  if ((certFile === undefined) !== (keyFile === undefined))
    fail(
      certFile === undefined ? 'nats-tls-key' : 'nats-tls-cert',
      'needs --nats-tls-cert and --nats-tls-key together',
    )
  for (const [name, path] of [
    ['nats-tls-ca', caFile],
    ['nats-tls-cert', certFile],
    ['nats-tls-key', keyFile],
  ] as const) {
    if (path === undefined) continue
    const pem = readFile(source.label(name), path)
    if (!pem.includes('-----BEGIN ')) fail(name, `${JSON.stringify(path)} is not a PEM file`)
  }
  if (caFile !== undefined || certFile !== undefined) auth.tls = { caFile, certFile, keyFile }
  return auth
}

/** The `connect()` options for `auth` (nats.js's authenticators come from the loaded module). */
export const natsConnectOptions = (
  auth: NatsAuth,
  nats: Pick<typeof import('nats'), 'nkeyAuthenticator' | 'credsAuthenticator'>,
): Partial<ConnectionOptions> => {
  const options: Partial<ConnectionOptions> = {}
  const bytes = (text: string) => new TextEncoder().encode(text)
  if (auth.method === 'user-password') Object.assign(options, { user: auth.user, pass: auth.password })
  if (auth.method === 'token') options.token = auth.token as string
  if (auth.method === 'nkey') options.authenticator = nats.nkeyAuthenticator(bytes(auth.nkeySeed as string))
  if (auth.method === 'creds') options.authenticator = nats.credsAuthenticator(bytes(auth.creds as string))
  if (auth.tls !== undefined) {
    const tls: Record<string, string> = {}
    if (auth.tls.caFile !== undefined) tls.caFile = auth.tls.caFile
    if (auth.tls.certFile !== undefined) tls.certFile = auth.tls.certFile
    if (auth.tls.keyFile !== undefined) tls.keyFile = auth.tls.keyFile
    options.tls = tls
  }
  return options
}
