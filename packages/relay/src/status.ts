import type { OutboxRelay } from '@txbox/core'

/** Where the relay process is: it only relays in `running`. */
export type RelayPhase =
  | 'connecting to the store'
  | 'connecting to NATS'
  | 'creating the stream'
  | 'running'
  | 'stopping'

/**
 * What the process is doing and, until it runs, why it is not ready: read by GET /health and
 * GET /ready, written by the start-up sequence.
 */
export class RelayStatus {
  #phase: RelayPhase = 'connecting to the store'
  #reason = 'starting'
  #relay: OutboxRelay | undefined

  get phase(): RelayPhase {
    return this.#phase
  }

  /** Why the relay is not running yet (the last failed attempt, or the step under way). */
  get reason(): string {
    return this.#reason
  }

  /** The running relay, once started. */
  get relay(): OutboxRelay | undefined {
    return this.#relay
  }

  waiting(phase: Exclude<RelayPhase, 'running' | 'stopping'>, reason: string): void {
    this.#phase = phase
    this.#reason = reason
  }

  running(relay: OutboxRelay): void {
    this.#phase = 'running'
    this.#reason = 'running'
    this.#relay = relay
  }

  stopping(reason: string): void {
    this.#phase = 'stopping'
    this.#reason = reason
  }
}
