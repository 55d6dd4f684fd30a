import type { Clock } from '../clock.js'
import type { TxboxLogger } from '../logger.js'
import { messageOf } from './sleep.js'

/** The failure class of an error thrown by `publish`: its string `reason` (JetStreamPublishError has one), else `error`. */
export const failureReason = (error: unknown): string => {
  const reason = (error as { reason?: unknown } | null)?.reason
  return typeof reason === 'string' && reason.length > 0 ? reason : 'error'
}

/** Whether retrying cannot help (`permanent: true` on the error, e.g. a message over the server's max_payload). */
export const isPermanentFailure = (error: unknown): boolean =>
  (error as { permanent?: unknown } | null)?.permanent === true

/** The reason a publish that got no answer in time reports. */
export const TIMEOUT_REASON = 'timeout'

/**
 * Failed publishes as an operator needs to see them:
 * - counted by reason, for the metrics;
 * - logged at warn, at most one line per `logEveryMs` with the count per reason since the
 *   previous line (a 10 s outage is hundreds of failures: one line each would bury the
 *   log, none at all hides the outage); the relay's loop calls {@link tick} so that the
 *   last failures of a burst are logged even when no further failure comes;
 * - publishes that timed out with no success since make the transport unhealthy: a hung
 *   broker (SIGSTOPped, or a network that drops packets) keeps the connection "connected"
 *   and only shows as publishes that never get an answer. The first success after that
 *   is logged once.
 */
export class PublishFailures {
  readonly #clock: Clock
  readonly #logger: TxboxLogger
  readonly #logEveryMs: number
  /** Cumulative failures per reason. */
  readonly byReason: Record<string, number> = {}
  #unlogged: Record<string, number> = {}
  #unloggedCount = 0
  #unloggedLast = { eventId: '', subject: '', error: '' }
  #lastLoggedAt: number | null = null
  #timeoutsSinceSuccess = 0
  #firstTimeoutAt = 0
  #lastTimeout = ''

  constructor(clock: Clock, logger: TxboxLogger, logEveryMs: number) {
    this.#clock = clock
    this.#logger = logger
    this.#logEveryMs = logEveryMs
  }

  /** Records a failed publish that will be retried (or dead-lettered: `willRetry` false). */
  failed(event: { eventId: string; subject: string }, error: unknown, willRetry: boolean): void {
    const reason = failureReason(error)
    const now = this.#clock().getTime()
    this.byReason[reason] = (this.byReason[reason] ?? 0) + 1
    if (reason === TIMEOUT_REASON) {
      if (this.#timeoutsSinceSuccess === 0) this.#firstTimeoutAt = now
      this.#timeoutsSinceSuccess++
      this.#lastTimeout = messageOf(error)
    }
    // Dead letters get their own error line each; only retried failures are summarised.
    if (!willRetry) return
    this.#unlogged[reason] = (this.#unlogged[reason] ?? 0) + 1
    this.#unloggedCount++
    this.#unloggedLast = { eventId: event.eventId, subject: event.subject, error: messageOf(error) }
    this.#logIfDue(now)
  }

  /** Writes the pending summary line once `logEveryMs` has passed since the previous one. */
  tick(): void {
    this.#logIfDue(this.#clock().getTime())
  }

  #logIfDue(now: number): void {
    if (this.#unloggedCount === 0) return
    if (this.#lastLoggedAt !== null && now - this.#lastLoggedAt < this.#logEveryMs) return
    this.#logger.warn('publishes failed; they will be retried with backoff', {
      failed: this.#unloggedCount,
      byReason: this.#unlogged,
      sinceMs: this.#lastLoggedAt === null ? 0 : now - this.#lastLoggedAt,
      lastEventId: this.#unloggedLast.eventId,
      lastSubject: this.#unloggedLast.subject,
      lastError: this.#unloggedLast.error,
    })
    this.#lastLoggedAt = now
    this.#unlogged = {}
    this.#unloggedCount = 0
  }

  /** Records a publish the transport confirmed. */
  succeeded(): void {
    if (this.#timeoutsSinceSuccess === 0) return
    const now = this.#clock().getTime()
    this.#logger.warn('publishing works again after publishes timed out', {
      timedOut: this.#timeoutsSinceSuccess,
      forMs: now - this.#firstTimeoutAt,
    })
    this.#timeoutsSinceSuccess = 0
  }

  /** Not ok while publishes timed out and none succeeded since. */
  health(): { ok: boolean; detail?: string | undefined } {
    if (this.#timeoutsSinceSuccess === 0) return { ok: true }
    const seconds = Math.round((this.#clock().getTime() - this.#firstTimeoutAt) / 100) / 10
    return {
      ok: false,
      detail:
        `${this.#timeoutsSinceSuccess} publishes timed out since ${new Date(this.#firstTimeoutAt).toISOString()} ` +
        `(${seconds} s) and none succeeded since; last: ${this.#lastTimeout}`,
    }
  }
}
