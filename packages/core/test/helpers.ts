import {
  createMemoryStore,
  type InboxMessage,
  type InboxSource,
  type InboxSubscription,
  ManualClock,
  type MemoryStore,
  type MemoryTransaction,
  type OutboxEvent,
  type OutboxPublisher,
  OutboxRelay,
  type OutboxRelayOptions,
  type PublishReceipt,
  silentLogger,
  type TransactionRunner,
} from '../src/index.js'

/** A transaction runner over the memory store: commit when `fn` resolves, roll back when it throws. */
export const memoryTransactionRunner =
  (store: MemoryStore): TransactionRunner<MemoryTransaction> =>
  async (fn) => {
    const tx = store.begin()
    try {
      const result = await fn(tx)
      tx.commit()
      return result
    } catch (error) {
      tx.rollback()
      throw error
    }
  }

/** Lets every queued callback and microtask run (the relay's awaits), without real time passing. */
export const flush = async (rounds = 20): Promise<void> => {
  for (let round = 0; round < rounds; round++) await new Promise<void>((resolve) => setImmediate(resolve))
}

/** A sleep the test drives: nothing resolves until `fire()` or an abort. */
export class ManualSleeper {
  readonly pending: { ms: number; resolve: () => void }[] = []
  readonly requested: number[] = []

  readonly sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
    new Promise<void>((resolve) => {
      this.requested.push(ms)
      if (signal?.aborted) {
        resolve()
        return
      }
      const entry = {
        ms,
        resolve: () => {
          const index = this.pending.indexOf(entry)
          if (index >= 0) this.pending.splice(index, 1)
          resolve()
        },
      }
      this.pending.push(entry)
      signal?.addEventListener('abort', () => entry.resolve(), { once: true })
    })

  /** Resolves the pending sleeps (all, or those of `ms`). */
  fire(ms?: number): number {
    const due = this.pending.filter((entry) => ms === undefined || entry.ms === ms)
    for (const entry of due) entry.resolve()
    return due.length
  }
}

/** `ok`, a duplicate ack (unverified), a failure, or the exact receipt to return. */
type Outcome = 'ok' | 'duplicate' | Error | PublishReceipt

/** A publisher with scripted outcomes, an optional gate, and a record of what it published. */
export class FakePublisher implements OutboxPublisher {
  readonly published: OutboxEvent[] = []
  active = 0
  maxActive = 0
  outcome: (event: OutboxEvent) => Outcome = () => 'ok'
  #gate: Promise<void> | undefined
  #open: (() => void) | undefined
  connected = true

  /** Publishes wait until `release()`. */
  hold(): void {
    this.#gate = new Promise<void>((resolve) => {
      this.#open = resolve
    })
  }

  release(): void {
    this.#open?.()
    this.#gate = undefined
  }

  async publish(event: OutboxEvent): Promise<PublishReceipt> {
    this.active++
    this.maxActive = Math.max(this.maxActive, this.active)
    try {
      await new Promise<void>((resolve) => setImmediate(resolve))
      if (this.#gate) await this.#gate
      const outcome = this.outcome(event)
      if (outcome instanceof Error) throw outcome
      this.published.push(event)
      if (typeof outcome === 'object') return outcome
      return { duplicate: outcome === 'duplicate' }
    } finally {
      this.active--
    }
  }

  health() {
    return this.connected ? { ok: true } : { ok: false, detail: 'down' }
  }
}

/** A settled-state record of one fake message. */
export interface FakeMessage extends InboxMessage {
  settled: { kind: 'ack' } | { kind: 'nak'; delayMs: number } | { kind: 'term'; reason: string } | undefined
}

export const message = (
  fields: Partial<Omit<InboxMessage, 'ack' | 'nak' | 'term'>> & { eventId: string | undefined },
): FakeMessage => {
  const result: FakeMessage = {
    subject: 'orders.created',
    payload: '{}',
    headers: {},
    storedHeaders: undefined,
    stream: 'ORDERS',
    streamSeq: 1,
    deliveryCount: 1,
    ...fields,
    settled: undefined,
    ack: () => {
      result.settled = { kind: 'ack' }
    },
    nak: (delayMs) => {
      result.settled = { kind: 'nak', delayMs }
    },
    term: (reason) => {
      result.settled = { kind: 'term', reason }
    },
  }
  return result
}

/** A source fed by the test. */
export class FakeSource implements InboxSource {
  readonly #queue: InboxMessage[] = []
  #wake: (() => void) | undefined
  #stopped = false

  push(...messages: InboxMessage[]): void {
    this.#queue.push(...messages)
    this.#wake?.()
  }

  async subscribe(): Promise<InboxSubscription> {
    const self = this
    return {
      async *[Symbol.asyncIterator]() {
        while (!self.#stopped) {
          const next = self.#queue.shift()
          if (next) {
            yield next
            continue
          }
          await new Promise<void>((resolve) => {
            self.#wake = resolve
          })
        }
      },
      stop: () => {
        self.#stopped = true
        self.#wake?.()
      },
    }
  }
}

/**
 * An `OutboxRelay` over a fresh memory store on a manual clock and sleeper, as the relay tests
 * drive it: worker 'relay-a', no jitter from `random`, full batches from the first claim (the
 * ramp-up has its own tests), silent unless given a logger. `options` override any of it;
 * `publisher` defaults to a `FakePublisher`.
 */
export const relayOverMemory = <P extends OutboxPublisher = FakePublisher>(
  options: Partial<Omit<OutboxRelayOptions, 'publisher'>> & { publisher?: P } = {},
  storeOptions: { maxEventBytes?: number } = {},
) => {
  const clock = new ManualClock()
  const store = createMemoryStore({ clock: clock.now, ...storeOptions })
  const publisher = (options.publisher ?? new FakePublisher()) as P
  const sleeper = new ManualSleeper()
  const relay = new OutboxRelay({
    outbox: store.outbox,
    workerId: 'relay-a',
    clock: clock.now,
    sleep: sleeper.sleep,
    random: () => 0,
    backoff: { baseMs: 100, maxMs: 1_000, jitter: 0 },
    claimRampUp: false,
    logger: silentLogger,
    ...options,
    publisher,
  })
  return { clock, store, publisher, sleeper, relay }
}
