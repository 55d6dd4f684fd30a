import {
  backoffDelayMs,
  errorFields,
  messageOf,
  type ResolvedBackoff,
  realSleep,
  type TxboxLogger,
} from '@txbox/core'
import { ConfigurationError } from './errors.js'

/**
 * Start-up waits for a store or NATS that is not reachable yet: the delay doubles from
 * 250 ms to a 15 s ceiling, so a server that comes back is found within 15 s and a long
 * outage logs about four lines a minute.
 */
export const STARTUP_BACKOFF: ResolvedBackoff = Object.freeze({ baseMs: 250, maxMs: 15_000, jitter: 0.2 })

/** One attempt that neither succeeds nor fails within this long counts as failed. */
export const ATTEMPT_TIMEOUT_MS = 15_000

export interface RetryOptions<T> {
  /** For the log: `store`, `NATS`, `stream`. */
  name: string
  /** Logged with every failure (the store kind, the redacted URL). */
  fields: Record<string, unknown>
  attempt: () => Promise<T>
  /** Ends the wait at once (SIGTERM): resolves undefined. */
  signal: AbortSignal
  logger: TxboxLogger
  /** Told the reason after each failure, for GET /ready. */
  onFailure: (reason: string) => void
  /** Releases a result that arrived after its attempt timed out or after the stop. */
  discard?: ((late: T) => void) | undefined
  /** The failure as logged (default: the error's message). */
  describe?: ((error: unknown) => string) | undefined
  backoff?: ResolvedBackoff | undefined
  timeoutMs?: number | undefined
}

type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown } | { stopped: true }

const settle = <T>(options: RetryOptions<T>, timeoutMs: number): Promise<Outcome<T>> =>
  new Promise((resolve) => {
    let settled = false
    const finish = (outcome: Outcome<T>): void => {
      if (settled) {
        if ('ok' in outcome && outcome.ok) options.discard?.(outcome.value)
        return
      }
      settled = true
      clearTimeout(timer)
      options.signal.removeEventListener('abort', onAbort)
      resolve(outcome)
    }
    const onAbort = (): void => finish({ stopped: true })
    const timer = setTimeout(
      () => finish({ ok: false, error: new Error(`no answer within ${timeoutMs} ms`) }),
      timeoutMs,
    )
    options.signal.addEventListener('abort', onAbort, { once: true })
    Promise.resolve()
      .then(options.attempt)
      .then(
        (value) => finish({ ok: true, value }),
        (error: unknown) => finish({ ok: false, error }),
      )
  })

/**
 * Runs `attempt` until it succeeds, logging each failure with its reason and the next
 * delay; resolves undefined as soon as `signal` aborts (in an attempt or between two).
 * A {@link ConfigurationError} is not retried: it is thrown.
 */
export const retryUntilReady = async <T>(options: RetryOptions<T>): Promise<T | undefined> => {
  const backoff = options.backoff ?? STARTUP_BACKOFF
  const timeoutMs = options.timeoutMs ?? ATTEMPT_TIMEOUT_MS
  for (let attempt = 1; !options.signal.aborted; attempt++) {
    const outcome = await settle(options, timeoutMs)
    if ('stopped' in outcome) return undefined
    if (outcome.ok) {
      if (attempt > 1)
        options.logger.info?.(`${options.name} reachable`, { ...options.fields, attempts: attempt })
      return outcome.value
    }
    if (outcome.error instanceof ConfigurationError) throw outcome.error
    const reason = options.describe?.(outcome.error) ?? messageOf(outcome.error)
    const retryInMs = backoffDelayMs(attempt, backoff)
    options.logger.warn(`${options.name} not reachable; retrying`, {
      ...options.fields,
      attempt,
      retryInMs,
      ...errorFields(outcome.error),
      error: reason,
    })
    options.onFailure(`${reason} (attempt ${attempt}; next in ${retryInMs} ms)`)
    await realSleep(retryInMs, options.signal)
  }
  return undefined
}
