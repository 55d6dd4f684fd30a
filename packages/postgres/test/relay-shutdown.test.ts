import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createNamespace, type Namespace, noServer, skipReason, url } from './helpers.js'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const CHILD = fileURLToPath(new URL('./fixtures/relay-shutdown-child.mjs', import.meta.url))
/** How long a stopped service may take to exit by itself (it takes well under a second). */
const EXIT_DEADLINE_MS = 15_000

// The child loads the packages as an app does, from dist: tsc -b builds postgres and core
// (incremental: fast when nothing changed).
const build = (): void => {
  try {
    execFileSync('pnpm', ['exec', 'tsc', '-b', 'packages/postgres'], {
      cwd: ROOT,
      stdio: 'pipe',
      timeout: 300_000,
    })
  } catch (error) {
    // tsc -b still emits when another package of a shared work tree has a type error at
    // this moment; without any dist there is nothing to run.
    if (
      !existsSync(`${ROOT}packages/postgres/dist/index.js`) ||
      !existsSync(`${ROOT}packages/core/dist/index.js`)
    )
      throw error
    const output = (error as { stdout?: Buffer }).stdout?.toString() ?? String(error)
    console.warn(
      `[relay-shutdown] build reported errors, running the emitted dist:\n${output.slice(0, 2_000)}`,
    )
  }
}

const natsUrl = process.env.TXBOX_NATS_URL

type Mode = 'owned' | 'shared' | 'full'

const run = (schema: string, mode: Mode) => {
  const stream = `TXBOX_SHUTDOWN_${schema.toUpperCase()}`
  const child = spawn(process.execPath, [CHILD, url ?? '', schema, mode, natsUrl ?? '', stream], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString()
  })
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString()
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return { child, exited, output: () => output }
}

const within = <T>(promise: Promise<T>, ms: number): Promise<T | 'deadline'> =>
  Promise.race([promise, new Promise<'deadline'>((resolve) => setTimeout(() => resolve('deadline'), ms))])

const lineSeen = async (read: () => string, line: string, child: ChildProcess): Promise<void> => {
  const deadline = Date.now() + 30_000
  while (!read().split('\n').includes(line)) {
    if (Date.now() > deadline || child.exitCode !== null)
      throw new Error(`no "${line}" from the child:\n${read()}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

describe.skipIf(noServer)(`library relay shutdown${noServer ? ` (skipped: ${skipReason})` : ''}`, () => {
  let ns: Namespace
  const children: ChildProcess[] = []

  beforeAll(async () => {
    build()
    ns = await createNamespace()
  }, 300_000)

  afterAll(async () => {
    for (const child of children)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await ns?.dispose()
  })

  const stopsAndExits = async (mode: Mode): Promise<void> => {
    const service = run(ns.schema, mode)
    children.push(service.child)
    await lineSeen(service.output, 'ready', service.child)
    service.child.kill('SIGTERM')
    const code = await within(service.exited, EXIT_DEADLINE_MS)
    expect(code, `the service did not exit within ${EXIT_DEADLINE_MS} ms:\n${service.output()}`).toBe(0)
    expect(service.output()).toContain('stopped\n')
  }

  it('owned: relay.stop() closes the wakeup it was given; then pool.end() and the process exits by itself', () =>
    stopsAndExits('owned'))

  it('shared: ownsWakeup: false, the app closes the wakeup; then pool.end() and the process exits by itself', () =>
    stopsAndExits('shared'))

  it.skipIf(natsUrl === undefined)(
    `full: with NATS JetStream and an InboxProcessor on a pg transaction runner, processor.stop() -> relay.stop() -> nc.drain() -> pool.end() and the process exits by itself${natsUrl === undefined ? ' (skipped: TXBOX_NATS_URL is not set)' : ''}`,
    () => stopsAndExits('full'),
  )
})
