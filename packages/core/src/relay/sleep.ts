/**
 * Waits `ms` milliseconds or until `signal` aborts, whichever comes first; never rejects.
 * The relay and the processor take it as an option so tests can drive time themselves.
 */
export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>

/** The real-timer {@link Sleep}. */
export const realSleep: Sleep = (ms, signal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) {
      resolve()
      return
    }
    const onAbort = () => {
      clearTimeout(timer)
      resolve()
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })

/** Minimal structured logger; the relay and processor log nothing unless given one. */
export interface TxboxLogger {
  debug?(message: string, fields?: Record<string, unknown>): void
  info?(message: string, fields?: Record<string, unknown>): void
  warn(message: string, fields?: Record<string, unknown>): void
  error(message: string, fields?: Record<string, unknown>): void
}

/** The logger used when none is given. */
export const silentLogger: TxboxLogger = Object.freeze({ warn: () => {}, error: () => {} })

/** An error's message, for `errorMessage` columns and logs. */
export const messageOf = (error: unknown): string => {
  const text = error instanceof Error ? error.message : String(error)
  return text.length > 0 ? text : 'unknown error'
}
