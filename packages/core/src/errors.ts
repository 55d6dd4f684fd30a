import type { StorageErrorReason } from './kernel/storage-failure.js'

/** Stable machine-readable codes carried by every {@link TxboxError}. */
export type TxboxErrorCode = 'VALIDATION' | 'EVENT_NOT_FOUND' | 'LEASE_LOST' | 'PAYLOAD_TOO_LARGE' | 'STORAGE'

/** Builds the message prefix every txbox error starts with: `[txbox] [<adapter>]`. */
export const errorPrefix = (adapter: string): string => `[txbox] [${adapter}]`

/**
 * Where each error records its class names. A process can hold two copies of these classes
 * (an app that `import`s txbox in one place and `require`s it in another loads the ES
 * module and the CommonJS build); `instanceof` must still hold across them.
 */
const ERROR_CLASSES = Symbol.for('@txbox/core/error-classes')

const classNames = (target: abstract new (...args: never[]) => unknown): string[] => {
  const names: string[] = []
  for (let c: unknown = target; typeof c === 'function' && c !== Error; c = Object.getPrototypeOf(c))
    names.push(c.name)
  return names
}

/**
 * The base class of every error txbox throws. Messages start with `[txbox] [<adapter>]`;
 * the original driver error, when there is one, is kept as `cause`.
 */
export class TxboxError extends Error {
  /** `instanceof` also recognises the same class of another copy of `@txbox/core` (see {@link ERROR_CLASSES}). */
  // `this` is the class `instanceof` asks about (a subclass inherits this method), never
  // TxboxError itself for `x instanceof LeaseLostError`: the class name would be wrong here.
  static override [Symbol.hasInstance](value: unknown): boolean {
    // biome-ignore lint/complexity/noThisInStatic: the subclass asked about, see above
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true
    const names = typeof value === 'object' && value !== null ? Reflect.get(value, ERROR_CLASSES) : undefined
    // biome-ignore lint/complexity/noThisInStatic: the subclass asked about, see above
    return Array.isArray(names) && names.includes(this.name)
  }

  /** A stable code to branch on instead of the message. */
  readonly code: TxboxErrorCode
  /** The adapter (or component) that raised the error, e.g. `postgres`, `relay`. */
  readonly adapter: string

  constructor(code: TxboxErrorCode, adapter: string, message: string, options?: { cause?: unknown }) {
    super(
      `${errorPrefix(adapter)} ${message}`,
      options?.cause === undefined ? undefined : { cause: options.cause },
    )
    this.name = new.target.name
    this.code = code
    this.adapter = adapter
    Object.defineProperty(this, ERROR_CLASSES, { value: classNames(new.target) })
  }
}

/** Input that can never be valid. Thrown before any I/O; storage is left unchanged. */
export class ValidationError extends TxboxError {
  constructor(adapter: string, message: string, options?: { cause?: unknown }) {
    super('VALIDATION', adapter, message, options)
  }
}

/** `markAs*`, `retryLater` or `requeueFailed` named an event id that is not stored. */
export class EventNotFoundError extends TxboxError {
  /** The id that was not found. */
  readonly eventId: string

  constructor(adapter: string, eventId: string, store: 'outbox' | 'inbox' = 'outbox') {
    super('EVENT_NOT_FOUND', adapter, `${store} event not found: ${JSON.stringify(eventId)}`)
    this.eventId = eventId
  }
}

/**
 * A fenced write (one that named a `workerId`) found that the worker no longer holds the
 * claim: the lease expired and another worker claimed the event, or it was reset. The
 * worker MUST stop working on the event.
 */
export class LeaseLostError extends TxboxError {
  readonly eventId: string
  readonly workerId: string

  constructor(adapter: string, eventId: string, workerId: string) {
    super(
      'LEASE_LOST',
      adapter,
      `worker ${JSON.stringify(workerId)} no longer holds the lease on ${JSON.stringify(eventId)}`,
    )
    this.eventId = eventId
    this.workerId = workerId
  }
}

/**
 * The event is larger than the store accepts: over its `maxEventBytes` (what NATS can
 * carry) or its database's hard limit (e.g. DynamoDB's 400 KB item).
 */
export class PayloadTooLargeError extends TxboxError {
  readonly eventId: string
  readonly sizeBytes: number
  readonly limitBytes: number

  /** @param detail what was measured and what to do, appended to the message */
  constructor(adapter: string, eventId: string, sizeBytes: number, limitBytes: number, detail?: string) {
    super(
      'PAYLOAD_TOO_LARGE',
      adapter,
      `event ${JSON.stringify(eventId)} is ${sizeBytes} bytes, over the store's limit of ${limitBytes} bytes${detail === undefined ? '' : ` ${detail}`}`,
    )
    this.eventId = eventId
    this.sizeBytes = sizeBytes
    this.limitBytes = limitBytes
  }
}

/**
 * The database or its driver failed. The driver's error is kept as `cause`; `reason` and
 * `retryable` say what kind of failure it was (set by the adapter's one `classify`), so
 * callers branch on them instead of on the message.
 */
export class StorageError extends TxboxError {
  /** The repository operation that failed, e.g. `outbox.claim`. */
  readonly operation: string
  /** What kind of failure this is; `unknown` when the adapter did not recognise it. */
  readonly reason: StorageErrorReason
  /** True when running the call (or the caller's transaction) again may succeed. */
  readonly retryable: boolean

  constructor(
    adapter: string,
    operation: string,
    cause: unknown,
    detail?: string,
    failure?: { readonly reason: StorageErrorReason; readonly retryable: boolean },
  ) {
    const message = detail ?? (cause instanceof Error ? cause.message : String(cause))
    super('STORAGE', adapter, `${operation} failed: ${message}`, { cause })
    this.operation = operation
    this.reason = failure?.reason ?? 'unknown'
    this.retryable = failure?.retryable ?? false
  }
}
