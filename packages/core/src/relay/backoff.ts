import { ValidationError } from '../errors.js'
import { Validator } from '../validation.js'

/** Exponential backoff with jitter, persisted through `availableAt` by `retryLater`. */
export interface BackoffOptions {
  /** The delay after the first failure, before jitter: an integer of ms, at most `maxMs` (default 1,000). */
  baseMs?: number | undefined
  /** The ceiling of the delay, before jitter: an integer of ms, 0..2^53 - 1 (default 60,000). */
  maxMs?: number | undefined
  /**
   * The fraction of the delay that is random, 0..1 (default 0.2): the delay lies in
   * `[d * (1 - jitter), d]` where `d = min(maxMs, baseMs * 2^(attempt - 1))`. Jitter spreads
   * the retries of events that failed together (a NATS outage) so they do not return as one
   * thundering herd.
   */
  jitter?: number | undefined
}

/** Backoff options with every default filled in. */
export type ResolvedBackoff = Required<{ [K in keyof BackoffOptions]: number }>

export const DEFAULT_BACKOFF: ResolvedBackoff = Object.freeze({ baseMs: 1_000, maxMs: 60_000, jitter: 0.2 })

/**
 * Validates backoff options and fills in the defaults. Each delay is checked alone first,
 * with the limit of the store's `retryLater(delayMs)` (an exact integer, 0..2^53 - 1), so
 * a value that could never be stored names its own option, and only then the pair.
 */
export const resolveBackoff = (component: string, options: BackoffOptions = {}): ResolvedBackoff => {
  const validate = new Validator(component)
  const baseMs = validate.delayMs(options.baseMs ?? DEFAULT_BACKOFF.baseMs, 'backoff.baseMs')
  const maxMs = validate.delayMs(options.maxMs ?? DEFAULT_BACKOFF.maxMs, 'backoff.maxMs')
  const jitter = options.jitter ?? DEFAULT_BACKOFF.jitter
  if (maxMs < baseMs) {
    const named = (option: string, value: number, given: number | undefined) =>
      `${given === undefined ? 'the default ' : ''}${option} ${value}`
    throw new ValidationError(
      component,
      `${named('backoff.baseMs', baseMs, options.baseMs)} is larger than ${named('backoff.maxMs', maxMs, options.maxMs)}; ` +
        'raise backoff.maxMs or lower backoff.baseMs',
    )
  }
  if (typeof jitter !== 'number' || !Number.isFinite(jitter) || jitter < 0 || jitter > 1)
    throw new ValidationError(component, `backoff.jitter must be between 0 and 1; got ${String(jitter)}`)
  return { baseMs, maxMs, jitter }
}

/**
 * The delay before attempt `attempt + 1`, after `attempt` failures (1 = the first failure):
 * `d = min(maxMs, baseMs * 2^(attempt - 1))`, minus a random share of at most `jitter * d`.
 * `random` returns a number in [0, 1) (default `Math.random`); tests inject their own.
 */
export const backoffDelayMs = (
  attempt: number,
  backoff: ResolvedBackoff,
  random: () => number = Math.random,
): number => {
  const exponent = Math.max(0, Math.floor(attempt) - 1)
  // 2^exponent overflows to Infinity for huge attempts; min() keeps it at the ceiling.
  const ceiling = Math.min(backoff.maxMs, backoff.baseMs * 2 ** Math.min(exponent, 1_000))
  const share = Math.min(Math.max(random(), 0), 1)
  return Math.round(ceiling - ceiling * backoff.jitter * share)
}
