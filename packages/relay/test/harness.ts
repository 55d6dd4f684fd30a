import { type ChildProcess, execFile, execFileSync, spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { connect } from 'nats'

/** The monorepo root. */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url))

/** Whether the `nats-server` binary can be run. */
export const natsServerAvailable = (): boolean => {
  const probe = spawnSync('nats-server', ['--version'], { encoding: 'utf8' })
  return probe.status === 0
}

/** A TCP port nobody listens on right now. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address ? address.port : 0
      server.close(() => resolve(port))
    })
  })

const exited = (child: ChildProcess): Promise<number | null> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve(child.exitCode)
    : new Promise((resolve) => child.once('exit', (code) => resolve(code)))

/**
 * A private nats-server with JetStream on a free port and its own store directory, so the
 * test can stop and restart it without touching the shared server on 4222. `extraArgs`
 * make it a cluster node (see {@link NatsCluster}).
 */
export class NatsServerProcess {
  readonly port: number
  readonly storeDir: string
  readonly extraArgs: readonly string[]
  #child: ChildProcess | undefined
  readonly log: string[] = []

  constructor(port: number, storeDir: string, extraArgs: readonly string[] = []) {
    this.port = port
    this.storeDir = storeDir
    this.extraArgs = extraArgs
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`
  }

  /** Starts it and resolves once it logs "Server is ready" (deadline 15 s). */
  async start(): Promise<void> {
    const child = spawn(
      'nats-server',
      ['-js', '-sd', this.storeDir, '-a', '127.0.0.1', '-p', String(this.port), ...this.extraArgs],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    this.#child = child
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`nats-server not ready:\n${this.log.join('')}`)),
        15_000,
      )
      const onData = (chunk: Buffer) => {
        const text = chunk.toString()
        this.log.push(text)
        if (text.includes('Server is ready')) {
          clearTimeout(timer)
          resolve()
        }
      }
      child.stdout?.on('data', onData)
      child.stderr?.on('data', onData)
      child.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`nats-server exited with ${code}:\n${this.log.join('')}`))
      })
    })
  }

  /** Stops it (SIGTERM: a clean shutdown that keeps the JetStream store) and waits for the exit. */
  async stop(): Promise<void> {
    const child = this.#child
    if (!child) return
    this.#child = undefined
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    await exited(child)
    clearTimeout(timer)
  }

  /** Kills it (SIGKILL: a crash; JetStream recovers its store at the next start) and waits for the exit. */
  async kill(): Promise<void> {
    const child = this.#child
    if (!child) return
    this.#child = undefined
    child.kill('SIGKILL')
    await exited(child)
  }
}

/**
 * Three (or more) private nats-server processes with JetStream, joined by cluster routes on
 * loopback, so a stream can be R3 and a node can be killed while the others keep quorum.
 */
export class NatsCluster {
  readonly nodes: NatsServerProcess[]
  readonly names: string[]

  private constructor(nodes: NatsServerProcess[], names: string[]) {
    this.nodes = nodes
    this.names = names
  }

  /** Allocates ports and store directories under `baseDir` (nothing runs yet). */
  static async create(baseDir: string, size = 3): Promise<NatsCluster> {
    const clientPorts: number[] = []
    const routePorts: number[] = []
    for (let i = 0; i < size; i++) {
      clientPorts.push(await freePort())
      routePorts.push(await freePort())
    }
    const names = clientPorts.map((_, i) => `ledger-n${i + 1}`)
    const nodes = clientPorts.map((port, i) => {
      const routes = routePorts
        .filter((_, j) => j !== i)
        .map((routePort) => `nats://127.0.0.1:${routePort}`)
        .join(',')
      return new NatsServerProcess(port, join(baseDir, names[i] as string), [
        '-n',
        names[i] as string,
        '--cluster_name',
        'txbox-ledger',
        '--cluster',
        `nats://127.0.0.1:${routePorts[i]}`,
        '--routes',
        routes,
      ])
    })
    return new NatsCluster(nodes, names)
  }

  /** Every node's client URL, comma separated (what `--nats` and `connect` take). */
  get url(): string {
    return this.nodes.map((node) => node.url).join(',')
  }

  node(name: string): NatsServerProcess {
    const index = this.names.indexOf(name)
    const node = this.nodes[index]
    if (!node) throw new Error(`no cluster node named ${name} (nodes: ${this.names.join(', ')})`)
    return node
  }

  /**
   * Starts every node at once and resolves when JetStream answers through the cluster (its
   * meta leader is elected some time after each node logs "ready"; deadline 30 s).
   */
  async start(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.start()))
    const nc = await connect({ servers: this.url.split(',') })
    try {
      // jetstreamManager() asks the JetStream API for the account info: it fails until then.
      const ready = await waitUntil(
        async () => (await nc.jetstreamManager({ timeout: 2_000 }).catch(() => undefined)) !== undefined,
        30_000,
        250,
      )
      if (!ready) throw new Error(`the NATS cluster has no JetStream meta leader after 30 s`)
    } finally {
      await nc.close()
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()))
  }
}

/** The servers `scripts/services.sh` can run as a private instance, and their port variable. */
const SERVICE_PORT_VARIABLES = {
  mariadb: 'TXBOX_MYSQL_PORT',
  mongodb: 'TXBOX_MONGODB_PORT',
  dynamodb: 'TXBOX_DYNAMODB_PORT',
  redis: 'TXBOX_REDIS_PORT',
  postgres: 'TXBOX_POSTGRES_PORT',
} as const
export type PrivateServiceName = keyof typeof SERVICE_PORT_VARIABLES

/**
 * A private instance of one server, started by `scripts/services.sh` itself (same binaries,
 * same start-up and readiness checks) with its own state directory and a free port, so a
 * test may crash and restart it while the shared server on the standard port serves others.
 */
export class PrivateService {
  /** Live instances: a test process that dies without `destroy()` still kills their servers. */
  static readonly #live = new Set<PrivateService>()
  static {
    process.once('exit', () => {
      for (const service of PrivateService.#live) {
        try {
          process.kill(service.pid(), 'SIGKILL')
        } catch {
          // already gone
        }
      }
    })
  }

  readonly name: PrivateServiceName
  readonly port: number
  readonly stateDir: string
  readonly #env: NodeJS.ProcessEnv

  private constructor(name: PrivateServiceName, port: number, stateDir: string, env: NodeJS.ProcessEnv) {
    this.name = name
    this.port = port
    this.stateDir = stateDir
    this.#env = env
  }

  /** Picks a port and a state directory; `extraEnv` are more `TXBOX_*` settings of services.sh. */
  static async create(
    name: PrivateServiceName,
    extraEnv: Record<string, string> = {},
  ): Promise<PrivateService> {
    const port = await freePort()
    const stateDir = mkdtempSync(join(tmpdir(), `txbox-private-${name}-`))
    const env = {
      ...process.env,
      TXBOX_SERVICES_DIR: stateDir,
      [SERVICE_PORT_VARIABLES[name]]: String(port),
      ...extraEnv,
    }
    return new PrivateService(name, port, stateDir, env)
  }

  /** `services.sh up <name>`: starts it unless running and waits until it answers. */
  async up(): Promise<void> {
    PrivateService.#live.add(this)
    await this.#services('up')
  }

  /** The server's pid, from the pid file services.sh keeps. */
  pid(): number {
    return Number(readFileSync(join(this.stateDir, 'run', `${this.name}.pid`), 'utf8').trim())
  }

  /**
   * Crashes the server (SIGKILL, no shutdown), keeps it down for `downMs`, then starts it
   * again through services.sh. Returns when it answers again.
   */
  async crashAndRestart(downMs: number): Promise<void> {
    const pid = this.pid()
    process.kill(pid, 'SIGKILL')
    const deadline = Date.now() + 10_000
    while (alive(pid) && Date.now() < deadline) await sleep(20)
    await sleep(downMs)
    await this.up()
  }

  /** `services.sh down <name>`, then removes the state directory. */
  async destroy(): Promise<void> {
    await this.#services('down').catch(() => {})
    PrivateService.#live.delete(this)
    rmSync(this.stateDir, { recursive: true, force: true })
  }

  async #services(command: 'up' | 'down'): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      execFile(
        'bash',
        [join(ROOT, 'scripts/services.sh'), command, this.name],
        { env: this.#env, timeout: 300_000, maxBuffer: 4 * 1024 * 1024 },
        (error, _stdout, stderr) => {
          if (error) reject(new Error(`services.sh ${command} ${this.name} (private) failed:\n${stderr}`))
          else resolve()
        },
      )
    })
  }
}

/** Whether a process exists and is not a zombie. */
const alive = (pid: number): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}

/** The counters a relay logs when it stops (SIGTERM). */
export interface StoppedCounters {
  published: number
  duplicates: number
  retried: number
  dead: number
  leaseLost: number
  failed: number
}

/** One `txbox-relay` child process, run from the built bin (dist), its JSON log kept. */
export class RelayProcess {
  readonly name: string
  readonly child: ChildProcess
  readonly lines: string[] = []
  readonly exit: Promise<number | null>

  constructor(name: string, args: readonly string[]) {
    this.name = name
    this.child = spawn(
      process.execPath,
      ['packages/relay/bin/txbox-relay.js', ...args, '--worker-id', name],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    let partial = ''
    const collect = (chunk: Buffer) => {
      partial += chunk.toString()
      const complete = partial.split('\n')
      partial = complete.pop() ?? ''
      this.lines.push(...complete.filter((line) => line.length > 0))
    }
    this.child.stdout?.on('data', collect)
    this.child.stderr?.on('data', collect)
    this.exit = exited(this.child)
  }

  /** Resolves once the relay logged "relay started" (deadline 20 s). */
  async started(): Promise<void> {
    const deadline = Date.now() + 20_000
    while (!this.lines.some((line) => line.includes('"relay started"'))) {
      if (Date.now() > deadline || this.child.exitCode !== null)
        throw new Error(`relay ${this.name} did not start:\n${this.lines.join('\n')}`)
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  }

  kill(signal: NodeJS.Signals): void {
    this.child.kill(signal)
  }

  /** The counters from the "relay stopped" line, when it stopped cleanly. */
  counters(): StoppedCounters | undefined {
    const line = this.lines.find((entry) => entry.includes('"relay stopped"'))
    return line ? (JSON.parse(line).counters as StoppedCounters) : undefined
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `check` until it returns true or the deadline passes; returns whether it did. */
export const waitUntil = async (
  check: () => Promise<boolean>,
  timeoutMs: number,
  everyMs = 200,
): Promise<boolean> => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return true
    await sleep(everyMs)
  }
  return check()
}

/** Builds the relay's dist (the relay children run `bin/txbox-relay.js`), or keeps an existing one. */
export const buildRelay = (): void => {
  // Relays run from dist (bin/txbox-relay.js); tsc -b builds the relay and every package it
  // references (incremental: fast when nothing changed).
  try {
    execFileSync('pnpm', ['exec', 'tsc', '-b', 'packages/relay'], {
      cwd: ROOT,
      stdio: 'pipe',
      timeout: 300_000,
    })
  } catch (error) {
    // In a shared work tree another package may not compile at this very moment; a dist from
    // an earlier build still runs the scenario. Without any dist there is nothing to run.
    if (!existsSync(join(ROOT, 'packages/relay/dist/cli.js'))) throw error
    const output = (error as { stdout?: Buffer }).stdout?.toString() ?? String(error)
    console.warn(`[ledger] build failed, running the existing dist:\n${output.slice(0, 2_000)}`)
  }
}
