/**
 * The source of every timestamp an adapter writes or compares. Adapters never use the
 * database's `NOW()`, so time-dependent behaviour is testable without sleeping.
 */
export type Clock = () => Date

/** The wall clock. */
export const systemClock: Clock = () => new Date()

/**
 * A clock that moves only when told to: for tests of leases, backoff, cleanup and stale
 * resets. `now` is a bound function, so it can be handed to an adapter as its `clock`.
 */
export class ManualClock {
  #ms: number
  #autoAdvanceMs: number

  /**
   * @param start the initial time
   * @param options.autoAdvanceMs move forward by this much after every read (0: frozen)
   */
  constructor(start: Date | number = Date.UTC(2026, 0, 1), options: { autoAdvanceMs?: number } = {}) {
    this.#ms = typeof start === 'number' ? start : start.getTime()
    this.#autoAdvanceMs = options.autoAdvanceMs ?? 0
  }

  /** The current time; the clock function to pass to an adapter. */
  readonly now: Clock = () => {
    const current = new Date(this.#ms)
    this.#ms += this.#autoAdvanceMs
    return current
  }

  /** The current time in epoch milliseconds, without advancing an auto-advancing clock. */
  peekMs(): number {
    return this.#ms
  }

  /** Moves the clock forward by `ms` milliseconds. */
  advance(ms: number): this {
    this.#ms += ms
    return this
  }

  /** Sets the clock to `time`. */
  set(time: Date | number): this {
    this.#ms = typeof time === 'number' ? time : time.getTime()
    return this
  }

  /** Makes every later read advance the clock by `ms` (0 freezes it again). */
  setAutoAdvance(ms: number): this {
    this.#autoAdvanceMs = ms
    return this
  }
}

const MS_PER_MINUTE = 60_000
const MS_PER_DAY = 86_400_000

/** `now - olderThanDays`, the cutoff below which `cleanup` deletes. */
export const cutoffDays = (now: Date, olderThanDays: number): Date =>
  new Date(now.getTime() - olderThanDays * MS_PER_DAY)

/** `now - staleMinutes`, the claim time below which `resetStale` resets. */
export const cutoffMinutes = (now: Date, staleMinutes: number): Date =>
  new Date(now.getTime() - staleMinutes * MS_PER_MINUTE)

/** `time + ms` as a new Date. */
export const addMs = (time: Date, ms: number): Date => new Date(time.getTime() + ms)
