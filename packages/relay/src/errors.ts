import { errorPrefix } from '@txbox/core'

/**
 * Configuration that can never work: a bad flag or variable, a malformed URL, an adapter
 * that is not installed, options the adapter refuses. The CLI prints the message and exits 2
 * at once, since retrying cannot fix it (unlike a server that is not reachable yet).
 */
export class ConfigurationError extends Error {
  override readonly name: string = 'ConfigurationError'

  constructor(message: string, options?: { cause?: unknown }) {
    super(`${errorPrefix('relay')} ${message}`, options)
  }
}

/** A command-line error (unknown flag, missing `--store`): printed with the help. */
export class UsageError extends ConfigurationError {
  override readonly name: string = 'UsageError'
}
