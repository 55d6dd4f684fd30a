import { ValidationError } from './errors.js'

/** Log levels, from the most verbose. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const

/** One of {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number]

/**
 * txbox's structured logger: a message, then fields. `console` fits it, and so does any
 * logger that takes `(message, fields)` (winston, a test spy).
 */
export interface TxboxLogger {
  debug?(message: string, fields?: Record<string, unknown>): void
  info?(message: string, fields?: Record<string, unknown>): void
  warn(message: string, fields?: Record<string, unknown>): void
  error(message: string, fields?: Record<string, unknown>): void
}

/**
 * A logger that takes the fields first and the message second, as pino and bunyan do
 * (`logger.warn({ eventId }, 'event dead-lettered')`). It is recognised by its `child()`
 * plus pino's `bindings()` or bunyan's `fields`.
 */
export interface FieldsFirstLogger {
  debug?(fields: Record<string, unknown>, message: string): void
  info?(fields: Record<string, unknown>, message: string): void
  warn(fields: Record<string, unknown>, message: string): void
  error(fields: Record<string, unknown>, message: string): void
  child(bindings: Record<string, unknown>): unknown
}

/** What the `logger` option of the relay and the processor accepts. */
export type LoggerOption = TxboxLogger | FieldsFirstLogger

/** A logger that drops everything: pass it as `logger` to silence txbox. */
export const silentLogger: TxboxLogger = Object.freeze({ warn: () => {}, error: () => {} })

/** Options of {@link createJsonLogger}. */
export interface JsonLoggerOptions {
  /** The least severe level written (default `warn`: warnings and errors). */
  level?: LogLevel | undefined
  /** Where the lines go (default `process.stderr`). */
  stream?: { write(line: string): unknown } | undefined
  /** Fields added to every line (e.g. `{ component: 'relay' }`). */
  fields?: Record<string, unknown> | undefined
  /** The time source of the `time` field (default the system clock). */
  now?: (() => Date) | undefined
}

const describeError = (error: Error): Record<string, unknown> => ({
  name: error.name,
  message: error.message,
  ...(error.stack === undefined ? {} : { stack: error.stack }),
})

// JSON.stringify drops an Error's fields (they are not enumerable) and throws on a BigInt or
// a cycle; a log call must never throw, nor lose the reason it was made for.
const safeStringify = (record: Record<string, unknown>): string => {
  const seen = new WeakSet<object>()
  return JSON.stringify(record, (_key, value: unknown) => {
    if (typeof value === 'bigint') return value.toString()
    if (value instanceof Error) return describeError(value)
    if (typeof value === 'object' && value !== null) {
      if (seen.has(value)) return '[circular]'
      seen.add(value)
    }
    return value
  })
}

/**
 * A {@link TxboxLogger} that writes one JSON object per line:
 * `{"time":"…","level":"warn","msg":"…",…fields}`. The relay and the processor use it, at
 * level `warn` on stderr, when no `logger` is given.
 */
export const createJsonLogger = (options: JsonLoggerOptions = {}): Required<TxboxLogger> => {
  const threshold = LOG_LEVELS.indexOf(options.level ?? 'warn')
  if (threshold < 0)
    throw new ValidationError(
      'logger',
      `level must be one of ${LOG_LEVELS.join(', ')}; got ${String(options.level)}`,
    )
  const bound = options.fields ?? {}
  const now = options.now ?? (() => new Date())
  const at =
    (level: LogLevel) =>
    (msg: string, fields: Record<string, unknown> = {}): void => {
      if (LOG_LEVELS.indexOf(level) < threshold) return
      // Resolved per line, so a stream swapped by a test runner or a process manager is honoured.
      const stream = options.stream ?? globalThis.process?.stderr
      stream?.write(`${safeStringify({ time: now().toISOString(), level, msg, ...bound, ...fields })}\n`)
    }
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
}

const isFieldsFirst = (logger: LoggerOption): logger is FieldsFirstLogger => {
  const candidate = logger as Partial<Record<'child' | 'bindings' | 'fields', unknown>>
  if (typeof candidate.child !== 'function') return false
  return (
    typeof candidate.bindings === 'function' ||
    (typeof candidate.fields === 'object' && candidate.fields !== null)
  )
}

/**
 * The logger the relay or the processor uses: the one given, called in its own argument
 * order (pino and bunyan take the fields first), or {@link createJsonLogger} at `warn` on
 * stderr, with `component` and `defaultFields` on every line, when none is given.
 */
export const resolveLogger = (
  component: string,
  logger: LoggerOption | undefined,
  defaultFields: Record<string, unknown> = {},
): TxboxLogger => {
  if (logger === undefined) return createJsonLogger({ fields: { component, ...defaultFields } })
  if (
    typeof logger !== 'object' ||
    logger === null ||
    typeof logger.warn !== 'function' ||
    typeof logger.error !== 'function'
  )
    throw new ValidationError(
      component,
      'logger must have warn() and error() methods (console, pino, bunyan and TxboxLogger fit); pass silentLogger to log nothing',
    )
  if (!isFieldsFirst(logger)) return logger
  // Bound methods: pino's level methods read `this`.
  const call =
    (method: ((fields: Record<string, unknown>, message: string) => void) | undefined) =>
    (message: string, fields: Record<string, unknown> = {}): void =>
      method?.call(logger, fields, message)
  return {
    debug: call(logger.debug),
    info: call(logger.info),
    warn: call(logger.warn),
    error: call(logger.error),
  }
}
