import { StorageError } from '../errors.js'
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

/** An error's message, for `errorMessage` columns and logs. */
export const messageOf = (error: unknown): string => {
  const text = error instanceof Error ? error.message : String(error)
  return text.length > 0 ? text : 'unknown error'
}

/**
 * The log fields of a failure: its message, and for a storage failure the `reason` and
 * `retryable` its adapter classified, so an operator (or a log query) can tell a database
 * that is down from a missing table or a missing grant without reading driver text.
 */
export const errorFields = (error: unknown): { error: string; reason?: string; retryable?: boolean } =>
  error instanceof StorageError
    ? { error: messageOf(error), reason: error.reason, retryable: error.retryable }
    : { error: messageOf(error) }
