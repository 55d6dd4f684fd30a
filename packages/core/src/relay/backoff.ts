import { ValidationError } from '../errors.js'

/** Exponential backoff with jitter, persisted through `availableAt` by `retryLater`. */
export interface BackoffOptions {
  /** The delay after the first failure, before jitter (default 1,000 ms). */
  baseMs?: number | undefined
  /** The ceiling of the delay, before jitter (default 60,000 ms). */
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

/** Validates backoff options and fills in the defaults. */
export const resolveBackoff = (component: string, options: BackoffOptions = {}): ResolvedBackoff => {
  const baseMs = options.baseMs ?? DEFAULT_BACKOFF.baseMs
  const maxMs = options.maxMs ?? DEFAULT_BACKOFF.maxMs
  const jitter = options.jitter ?? DEFAULT_BACKOFF.jitter
  if (!Number.isFinite(baseMs) || baseMs < 0)
    throw new ValidationError(component, `backoff.baseMs must be a finite number >= 0; got ${baseMs}`)
  if (!Number.isFinite(maxMs) || maxMs < baseMs)
    throw new ValidationError(component, `backoff.maxMs must be a finite number >= baseMs; got ${maxMs}`)
  if (!Number.isFinite(jitter) || jitter < 0 || jitter > 1)
    throw new ValidationError(component, `backoff.jitter must be between 0 and 1; got ${jitter}`)
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
