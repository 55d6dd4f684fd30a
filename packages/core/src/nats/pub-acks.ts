import { createInbox, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from 'nats'

/** Why a JetStream publish got no PubAck: the publisher turns it into its own error. */
export type PubAckFailureReason = 'no-stream' | 'timeout' | 'rejected'

/** A publish that JetStream did not confirm, as the correlator saw it. */
export class PubAckFailure extends Error {
  readonly reason: PubAckFailureReason

  constructor(reason: PubAckFailureReason, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause })
    this.name = 'PubAckFailure'
    this.reason = reason
  }
}

/** A stored message's position, as JetStream acknowledged it. */
export interface PubAck {
  stream: string
  seq: number
  duplicate: boolean
}

interface Waiting {
  resolve(ack: PubAck): void
  reject(failure: PubAckFailure): void
  deadline: number
}

const decoder = new TextDecoder()

/**
 * Publishes with a reply subject and matches each PubAck to its publish, over ONE wildcard
 * subscription of the connection's inbox prefix, the way a JetStream publish is a NATS request.
 *
 * nats.js's `js.publish` is a full request per message: a request object, a timer, an
 * async generator, and a `NatsError` (with its captured stack) built on every success, where
 * the request cancels itself by rejecting its settled promise. On the relay's path that was
 * about a third of its CPU per event (measured: `docs/BENCHMARKS.md`, "PubAck correlation").
 * Here a publish is a map entry and `nc.publish`; timeouts are found by one sweep timer that
 * runs only while publishes wait (they all share one timeout, so the map's insertion order is
 * deadline order and a sweep stops at the first that has time left).
 */
export class PubAckCorrelator {
  readonly #connection: NatsConnection
  readonly #timeoutMs: number
  readonly #waiting = new Map<string, Waiting>()
  #prefix = ''
  #subscription: Subscription | undefined
  #sweeper: ReturnType<typeof setInterval> | undefined
  #next = 0

  constructor(connection: NatsConnection, timeoutMs: number) {
    this.#connection = connection
    this.#timeoutMs = timeoutMs
  }

  /** Publishes `data` to `subject` and resolves with its PubAck, or rejects with a {@link PubAckFailure}. */
  publish(subject: string, data: Uint8Array, headers: MsgHdrs): Promise<PubAck> {
    return new Promise<PubAck>((resolve, reject) => {
      const token = (this.#next++).toString(36)
      try {
        this.#subscribe()
        this.#waiting.set(token, { resolve, reject, deadline: performance.now() + this.#timeoutMs })
        this.#connection.publish(subject, data, { reply: this.#prefix + token, headers })
      } catch (error) {
        // A closed or draining connection, a subject the server cannot take.
        this.#waiting.delete(token)
        reject(new PubAckFailure('rejected', error instanceof Error ? error.message : String(error), error))
        return
      }
      this.#sweeper ??= this.#startSweeper()
    })
  }

  #subscribe(): void {
    if (this.#subscription !== undefined && !this.#subscription.isClosed()) return
    // The connection's own inbox prefix (`inboxPrefix` of connect()), which the user's
    // permissions allow replies on, as nats.js's requests use it.
    const inboxPrefix = (this.#connection as { options?: { inboxPrefix?: string } }).options?.inboxPrefix
    this.#prefix = `${createInbox(inboxPrefix)}.`
    this.#subscription = this.#connection.subscribe(`${this.#prefix}*`, {
      callback: (error, message) => {
        if (error) this.#failAll('rejected', `the PubAck subscription failed: ${error.message}`, error)
        else this.#answer(message)
      },
    })
    void this.#subscription.closed.then(() =>
      this.#failAll('rejected', 'the NATS connection closed before the PubAck arrived'),
    )
  }

  #answer(message: Msg): void {
    const token = message.subject.slice(this.#prefix.length)
    const waiting = this.#waiting.get(token)
    // No one waits: the publish timed out already (the relay publishes it again, and
    // JetStream answers that one as a duplicate).
    if (waiting === undefined) return
    this.#waiting.delete(token)
    // The server answers a request that no subscriber, so no stream, takes with an empty 503.
    if (message.data.length === 0 && message.headers?.code === 503) {
      waiting.reject(new PubAckFailure('no-stream', '503 no responders'))
      return
    }
    let answer: { stream?: unknown; seq?: unknown; duplicate?: unknown; error?: { description?: unknown } }
    try {
      answer = JSON.parse(decoder.decode(message.data)) as typeof answer
    } catch (error) {
      waiting.reject(new PubAckFailure('rejected', 'the PubAck is not JSON', error))
      return
    }
    if (answer.error !== undefined) {
      waiting.reject(new PubAckFailure('rejected', String(answer.error.description ?? 'JetStream error')))
      return
    }
    if (typeof answer.stream !== 'string' || answer.stream === '' || typeof answer.seq !== 'number') {
      waiting.reject(new PubAckFailure('rejected', 'the PubAck names no stream and sequence'))
      return
    }
    waiting.resolve({ stream: answer.stream, seq: answer.seq, duplicate: answer.duplicate === true })
  }

  #startSweeper(): ReturnType<typeof setInterval> {
    // A tenth of the timeout (10 ms to 1 s): a publish times out at most that much late.
    const every = Math.min(1_000, Math.max(10, Math.floor(this.#timeoutMs / 10)))
    const sweeper = setInterval(() => this.#sweep(), every)
    sweeper.unref()
    return sweeper
  }

  #sweep(): void {
    const now = performance.now()
    for (const [token, waiting] of this.#waiting) {
      if (waiting.deadline > now) break
      this.#waiting.delete(token)
      waiting.reject(new PubAckFailure('timeout', `no PubAck within ${this.#timeoutMs} ms`))
    }
    if (this.#waiting.size === 0) this.#stopSweeper()
  }

  #stopSweeper(): void {
    if (this.#sweeper !== undefined) clearInterval(this.#sweeper)
    this.#sweeper = undefined
  }

  #failAll(reason: PubAckFailureReason, message: string, cause?: unknown): void {
    const waiting = [...this.#waiting.values()]
    this.#waiting.clear()
    this.#stopSweeper()
    for (const one of waiting) one.reject(new PubAckFailure(reason, message, cause))
  }
}
