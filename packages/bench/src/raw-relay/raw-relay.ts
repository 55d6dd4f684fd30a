import { natsHeadersFor } from '@txbox/core/nats'
import type { JetStreamClient } from 'nats'
import type { RawOutbox } from './types.js'

export interface RawRelayOptions {
  readonly outbox: RawOutbox
  readonly js: JetStreamClient
  readonly workerId: string
  /** Events per claim. */
  readonly batchSize: number
  /** Wait after an empty claim. */
  readonly pollIntervalMs: number
}

const encoder = new TextEncoder()
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * The least relay a competent engineer would write by hand: claim a batch, publish all of it
 * at once (every publish in flight, the same message txbox's publisher sends: Nats-Msg-Id =
 * event id first, then the event's headers), await the acks, mark the acknowledged ones sent
 * in one statement; an empty claim waits `pollIntervalMs`. A failed publish stays claimed
 * until its lease ends; a failed claim or mark is counted and the loop goes on.
 */
export class RawRelay {
  readonly #options: RawRelayOptions
  #running: Promise<void> | undefined
  #stopping = false
  #published = 0
  #errors = 0

  constructor(options: RawRelayOptions) {
    this.#options = options
  }

  start(): void {
    this.#running ??= this.#loop()
  }

  async stop(): Promise<void> {
    this.#stopping = true
    await this.#running
  }

  /** Events published and marked sent so far, and the claims, publishes or marks that failed. */
  counters(): { published: number; errors: number } {
    return { published: this.#published, errors: this.#errors }
  }

  async #loop(): Promise<void> {
    const { outbox, js, workerId, batchSize, pollIntervalMs } = this.#options
    while (!this.#stopping) {
      try {
        const batch = await outbox.claim(workerId, batchSize)
        if (batch.length === 0) {
          await sleep(pollIntervalMs)
          continue
        }
        const acks = await Promise.allSettled(
          batch.map((event) =>
            js.publish(event.subject, encoder.encode(event.payload), {
              headers: natsHeadersFor(event.eventId, event.headers),
            }),
          ),
        )
        const acked = batch.filter((_, i) => acks[i]?.status === 'fulfilled').map((event) => event.eventId)
        this.#errors += batch.length - acked.length
        if (acked.length > 0) await outbox.markSent(workerId, acked)
        this.#published += acked.length
      } catch {
        this.#errors++
        await sleep(pollIntervalMs)
      }
    }
  }
}
