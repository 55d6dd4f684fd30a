import { type ChildProcess, fork } from 'node:child_process'
import type { ChildMessage, ParentMessage, RelayChildSpec } from './relay-protocol.js'

/** What the parent knows of one relay process: its last report. */
interface ChildState {
  readonly child: ChildProcess
  published: number
  errors: number
  rssKb: number
  hwmKb: number
  cpuMs: number
  done: boolean
}

/** A progress report of one relay process, for the memory run's samples. */
export type ProgressListener = (message: ChildMessage, child: number) => void

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Relay processes started from the bench: each opens its store and NATS connection, says
 * ready, and relays from `start()` on, reporting progress until `stop()`.
 */
export class RelayProcesses {
  readonly #children: ChildState[]
  #failure: Error | undefined

  private constructor(children: ChildState[]) {
    this.#children = children
  }

  /** Forks one child per spec and waits until every one is connected and ready (or throws). */
  static async launch(
    specs: readonly RelayChildSpec[],
    onMessage?: ProgressListener,
    readyWithinMs = 30_000,
  ): Promise<RelayProcesses> {
    const states: ChildState[] = []
    const ready: Array<Promise<void>> = []
    let processes: RelayProcesses | undefined
    for (const [index, spec] of specs.entries()) {
      const child = fork(new URL('./relay-child.js', import.meta.url), [JSON.stringify(spec)], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      })
      const state: ChildState = {
        child,
        published: 0,
        errors: 0,
        rssKb: 0,
        hwmKb: 0,
        cpuMs: 0,
        done: false,
      }
      states.push(state)
      ready.push(
        new Promise<void>((resolve, reject) => {
          child.on('message', (raw) => {
            const message = raw as ChildMessage
            onMessage?.(message, index)
            state.rssKb = message.rssKb
            if (message.type === 'ready') resolve()
            else {
              state.published = message.published
              state.errors = message.errors
            }
            if (message.type === 'done') {
              state.done = true
              state.hwmKb = message.hwmKb
              state.cpuMs = message.cpuMs
            }
          })
          child.on('exit', (code) => {
            const error = new Error(`relay process ${index} (${spec.relay}) exited with code ${code}`)
            if (!state.done && processes) processes.#failure ??= error
            reject(error)
          })
        }),
      )
    }
    processes = new RelayProcesses(states)
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        Promise.all(ready),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`relay processes not ready within ${readyWithinMs} ms`)),
            readyWithinMs,
          )
        }),
      ])
    } catch (error) {
      processes.kill()
      throw error
    } finally {
      clearTimeout(timer)
    }
    return processes
  }

  start(): void {
    this.#post({ type: 'start' })
  }

  /** Events published and marked sent by all the processes, as last reported. */
  published(): number {
    return this.#children.reduce((sum, state) => sum + state.published, 0)
  }

  /**
   * Waits until the processes together report `events` published (polling every
   * `pollMs`); throws on a failed publish, claim or mark, a dead process, or the deadline.
   */
  async waitForPublished(events: number, deadlineMs: number, pollMs = 2): Promise<void> {
    const deadline = Date.now() + deadlineMs
    while (this.published() < events) {
      if (this.#failure) throw this.#failure
      const errors = this.#children.reduce((sum, state) => sum + state.errors, 0)
      if (errors > 0) throw new Error(`${errors} failed publishes, claims or marks`)
      if (Date.now() > deadline)
        throw new Error(`only ${this.published()} of ${events} published in ${deadlineMs / 1000} s`)
      await sleep(pollMs)
    }
  }

  /** Stops every relay and waits for the processes to exit; returns each one's peak RSS (VmHWM, kB) and CPU time. */
  async stop(): Promise<Array<{ hwmKb: number; cpuMs: number }>> {
    const exited = this.#children.map(
      (state) =>
        new Promise<void>((resolve) => {
          if (state.child.exitCode !== null) resolve()
          else state.child.once('exit', () => resolve())
        }),
    )
    this.#post({ type: 'stop' })
    await Promise.all(exited)
    if (this.#failure) throw this.#failure
    return this.#children.map(({ hwmKb, cpuMs }) => ({ hwmKb, cpuMs }))
  }

  /** Ends every process at once (after a failure: nothing to wait for). */
  kill(): void {
    for (const state of this.#children) if (state.child.exitCode === null) state.child.kill('SIGKILL')
  }

  #post(message: ParentMessage): void {
    for (const state of this.#children) if (state.child.connected) state.child.send(message)
  }
}
