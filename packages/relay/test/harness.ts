import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'

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
 * test can stop and restart it without touching the shared server on 4222.
 */
export class NatsServerProcess {
  readonly port: number
  readonly storeDir: string
  #child: ChildProcess | undefined
  readonly log: string[] = []

  constructor(port: number, storeDir: string) {
    this.port = port
    this.storeDir = storeDir
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`
  }

  /** Starts it and resolves once it logs "Server is ready" (deadline 15 s). */
  async start(): Promise<void> {
    const child = spawn(
      'nats-server',
      ['-js', '-sd', this.storeDir, '-a', '127.0.0.1', '-p', String(this.port)],
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
