import { ValidationError } from './errors.js'
import type { InboxClaimOptions, InboxParams } from './inbox.js'
import type {
  ClaimOptions,
  EnqueueParams,
  KeyedDeadLetters,
  RenewLeaseOptions,
  RetryLaterOptions,
} from './outbox.js'

/** Longest accepted `eventId`, in UTF-16 code units. */
export const MAX_EVENT_ID_LENGTH = 255
/** Longest accepted `subject`. */
export const MAX_SUBJECT_LENGTH = 500
/** Longest accepted `workerId` and `stream`. */
export const MAX_NAME_LENGTH = 255
/** The largest `limit` (and the largest batch a bulk call takes). */
export const MAX_LIMIT = 10_000
/** The `limit` when none is given. */
export const DEFAULT_LIMIT = 100
/** The longest `leaseMs`: 2^31 - 1 ms (about 24.8 days). */
export const MAX_LEASE_MS = 2_147_483_647
/**
 * The longest wait the relay and the processor hand to a timer (poll interval, lease
 * renewal, ack progress): Node runs a longer `setTimeout` after 1 ms, which would turn a
 * wait into a hot loop.
 */
export const MAX_TIMER_MS = 2_147_483_647

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/
const WHITESPACE = /\s/
// C0 (CR, LF, tab, ...), DEL and C1: a NATS header line cannot carry them as they are.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/

const codePoint = (char: string): string =>
  `U+${(char.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`

/** A short, safe description of a bad value for an error message (never the whole value). */
export const describe = (value: unknown): string => {
  if (value === null) return 'null'
  if (typeof value === 'string')
    return value.length > 40 ? `a string of length ${value.length}` : JSON.stringify(value)
  if (typeof value === 'number') return String(value)
  if (Array.isArray(value)) return `an array of length ${value.length}`
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'an invalid Date' : value.toISOString()
  return typeof value
}

/** What `options` and `params` must be: an object, not null, not an array. */
const isObject = (value: unknown): value is object =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

const isWellFormed = (value: string): boolean =>
  (value as unknown as { isWellFormed(): boolean }).isWellFormed()

/**
 * The checks every adapter runs before any I/O, with identical messages for all of them
 * (only the `[txbox] [<adapter>]` prefix differs). Each method returns the normalized
 * value or throws {@link ValidationError}.
 */
export class Validator {
  readonly adapter: string
  /**
   * The store side the checked input belongs to. When set, every message names it after the
   * prefix (`[txbox] [postgres] inbox: eventId must be ...`): `eventId` or `limit` alone does
   * not tell a caller using both repositories which call was wrong.
   */
  readonly side: 'outbox' | 'inbox' | undefined
  /** The last subject {@link subject} accepted. */
  #validSubject: string | undefined

  constructor(adapter: string, side?: 'outbox' | 'inbox') {
    this.adapter = adapter
    this.side = side
  }

  #fail(message: string): never {
    throw new ValidationError(this.adapter, this.side === undefined ? message : `${this.side}: ${message}`)
  }

  /** A non-empty string of at most 255 UTF-16 code units. */
  eventId(value: unknown, name = 'eventId'): string {
    if (typeof value !== 'string' || value.length === 0 || value.length > MAX_EVENT_ID_LENGTH) {
      this.#fail(
        `${name} must be a non-empty string of at most ${MAX_EVENT_ID_LENGTH} characters; got ${describe(value)}`,
      )
    }
    if (!isWellFormed(value)) this.#fail(`${name} must be well-formed UTF-16 (it has a lone surrogate)`)
    return value
  }

  /**
   * The id of an event being created (`findOrCreate` of the outbox and the inbox): a valid
   * {@link eventId} that a NATS header carries verbatim, because JetStream dedupes on
   * `Nats-Msg-Id` and the NATS client trims header values (`o-1` and `o-1 ` would be one
   * message). So no leading or trailing whitespace (anything `String.prototype.trim`
   * removes) and no control character (C0 such as CR, LF, tab; DEL; C1).
   *
   * Applied at creation only: lookups (`get`, `markAsSent`, `requeueFailed`, ...) use
   * {@link eventId}, so events stored before this rule can still be inspected and redriven.
   */
  newEventId(value: unknown, name = 'eventId'): string {
    return this.#headerVerbatim(
      this.eventId(value, name),
      name,
      'so JetStream would dedupe it under another id',
    )
  }

  /**
   * An event's `orderingKey`: the general id rule (non-empty, at most 255 UTF-16 code units,
   * well-formed) and, since it travels as the `Txbox-Ordering-Key` header, one NATS carries verbatim.
   */
  orderingKey(value: unknown): string {
    return this.#headerVerbatim(
      this.eventId(value, 'orderingKey'),
      'orderingKey',
      'so a consumer would see another key than the one stored',
    )
  }

  /** `text` unchanged when a NATS header value carries it verbatim (no edge whitespace, no control character). */
  #headerVerbatim(text: string, name: string, consequence: string): string {
    if (text.trim() !== text) {
      const edge = text.trimStart() === text ? text.at(-1) : text.charAt(0)
      this.#fail(
        `${name} must not start or end with whitespace (it has ${codePoint(edge ?? ' ')}); got ${describe(text)}: ` +
          `NATS trims header values, ${consequence}. Remove the whitespace`,
      )
    }
    const control = CONTROL.exec(text)
    if (control) {
      this.#fail(
        `${name} must not contain control characters (${codePoint(control[0])} at index ${control.index}); got ${describe(text)}: ` +
          'a NATS header cannot carry CR, LF, tab, U+0000-U+001F, U+007F-U+009F. Use printable characters',
      )
    }
    return text
  }

  /** A list of event ids: an array of at most 10,000 valid ids. */
  eventIds(value: unknown, name = 'eventIds'): string[] {
    if (!Array.isArray(value)) this.#fail(`${name} must be an array of event ids; got ${describe(value)}`)
    if (value.length > MAX_LIMIT)
      this.#fail(`${name} must hold at most ${MAX_LIMIT} ids; got ${value.length}`)
    return value.map((id, index) => this.eventId(id, `${name}[${index}]`))
  }

  /**
   * A NATS subject an event can be published to: non-empty, at most 500 characters, no
   * whitespace, no empty token (`a..b`, `.a`, `a.`), and no wildcard token (`*` or `>`
   * standing alone between dots, which NATS would treat as a pattern). `*` or `>` inside a
   * longer token (`a*b`, `v>2`) is an ordinary character to nats-server: published, stored
   * and matched by a consumer filter on that exact subject, so it is accepted.
   */
  subject(value: unknown): string {
    // The subject of a batch is usually the one of the call before: checked once. Strings are
    // immutable and the rule depends on the text alone, so an equal text is valid as well.
    if (typeof value === 'string' && value === this.#validSubject) return value
    if (typeof value !== 'string' || value.length === 0 || value.length > MAX_SUBJECT_LENGTH) {
      this.#fail(
        `subject must be a non-empty string of at most ${MAX_SUBJECT_LENGTH} characters; got ${describe(value)}`,
      )
    }
    if (WHITESPACE.test(value)) this.#fail(`subject must not contain whitespace; got ${describe(value)}`)
    if (!isWellFormed(value)) this.#fail('subject must be well-formed UTF-16 (it has a lone surrogate)')
    const tokens = value.split('.')
    if (tokens.includes('')) {
      this.#fail(
        `subject must not have an empty token (a leading or trailing '.', or '..'); got ${describe(value)}: ` +
          'NATS cannot publish to it. Remove the empty token',
      )
    }
    if (tokens.some((token) => token === '*' || token === '>')) {
      this.#fail(
        `subject must be a literal subject, without a '*' or '>' wildcard token; got ${describe(value)}: ` +
          'an event is published to one subject, not a pattern. Name the subject (e.g. orders.created)',
      )
    }
    this.#validSubject = value
    return value
  }

  /**
   * Any string that can be stored without change. A lone surrogate cannot be encoded as
   * UTF-8 by any driver without being replaced, so it is rejected rather than altered.
   */
  text(value: unknown, name: string): string {
    if (typeof value !== 'string') this.#fail(`${name} must be a string; got ${describe(value)}`)
    if (!isWellFormed(value)) {
      this.#fail(
        `${name} must be well-formed UTF-16: a lone surrogate cannot be stored without being altered`,
      )
    }
    return value
  }

  /** A string or undefined. */
  optionalText(value: unknown, name: string): string | undefined {
    return value === undefined ? undefined : this.text(value, name)
  }

  /** A valid Date or undefined. */
  optionalDate(value: unknown, name: string): Date | undefined {
    if (value === undefined) return undefined
    if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
      this.#fail(`${name} must be a valid Date; got ${describe(value)}`)
    }
    return value
  }

  /** An integer from 1 to 10,000; `undefined` gives the default of 100. */
  limit(value: unknown, name = 'limit'): number {
    if (value === undefined) return DEFAULT_LIMIT
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_LIMIT) {
      this.#fail(`${name} must be an integer from 1 to ${MAX_LIMIT}; got ${describe(value)}`)
    }
    return value
  }

  /** A finite number >= 0 (fractions allowed): `olderThanDays`, `staleMinutes`. */
  nonNegative(value: unknown, name: string): number {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      this.#fail(`${name} must be a finite number >= 0; got ${describe(value)}`)
    }
    return value
  }

  /** An integer > 0, at most {@link MAX_LEASE_MS} milliseconds (about 24.8 days). */
  leaseMs(value: unknown, name = 'leaseMs'): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > MAX_LEASE_MS) {
      this.#fail(`${name} must be an integer from 1 to ${MAX_LEASE_MS}; got ${describe(value)}`)
    }
    return value
  }

  /** An integer >= 0 of milliseconds, exact (at most 2^53 - 1). */
  delayMs(value: unknown, name = 'delayMs'): number {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      this.#fail(`${name} must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}; got ${describe(value)}`)
    }
    return value
  }

  /** An integer from 1 to `max` (default 2^53 - 1): a count such as `maxAttempts` or `concurrency`. */
  positiveInteger(value: unknown, name: string, max = Number.MAX_SAFE_INTEGER): number {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > max) {
      this.#fail(`${name} must be an integer from 1 to ${max}; got ${describe(value)}`)
    }
    return value
  }

  /**
   * A wait handed to a timer: a finite number of milliseconds from `min` (default 0) to
   * {@link MAX_TIMER_MS}.
   */
  timerMs(value: unknown, name: string, min = 0): number {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > MAX_TIMER_MS) {
      this.#fail(
        `${name} must be a number of milliseconds from ${min} to ${MAX_TIMER_MS} (the longest timer Node can wait); got ${describe(value)}`,
      )
    }
    return value
  }

  /** A non-empty string of at most 255 characters. */
  workerId(value: unknown): string {
    if (typeof value !== 'string' || value.length === 0 || value.length > MAX_NAME_LENGTH) {
      this.#fail(
        `workerId must be a non-empty string of at most ${MAX_NAME_LENGTH} characters; got ${describe(value)}`,
      )
    }
    return value
  }

  /** `undefined` or a valid workerId. */
  optionalWorkerId(value: unknown): string | undefined {
    return value === undefined ? undefined : this.workerId(value)
  }

  /** A table / collection / key-prefix name: `^[A-Za-z_][A-Za-z0-9_]{0,62}$`. */
  identifier(value: unknown, name: string): string {
    if (typeof value !== 'string' || !IDENTIFIER.test(value)) {
      this.#fail(`${name} must match ${IDENTIFIER.source}; got ${describe(value)}`)
    }
    return value
  }

  /** The `{ tx }` options of a write: absent, or an object (its `tx` is the store's to check). */
  writeOptions(value: unknown): { tx?: unknown } | undefined {
    return value === undefined ? undefined : this.#object<{ tx?: unknown }>(value, 'options')
  }

  #object<T>(value: unknown, name: string): T {
    if (!isObject(value)) {
      this.#fail(`${name} must be an object; got ${describe(value)}`)
    }
    return value as T
  }

  /**
   * The whole of `findOrCreate`'s input, normalized (optional fields absent, not undefined).
   * The id must be one NATS carries verbatim ({@link newEventId}).
   */
  enqueueParams(value: unknown, name = 'params'): EnqueueParams {
    return this.#enqueueFields(this.#object<Record<string, unknown>>(value, name))
  }

  /** The fields of {@link enqueueParams}, of an input known to be an object. */
  #enqueueFields(params: Record<string, unknown>): EnqueueParams {
    const normalized: EnqueueParams = {
      eventId: this.newEventId(params.eventId),
      subject: this.subject(params.subject),
      payload: this.text(params.payload, 'payload'),
    }
    const headers = this.optionalText(params.headers, 'headers')
    if (headers !== undefined) normalized.headers = headers
    const availableAt = this.optionalDate(params.availableAt, 'availableAt')
    if (availableAt !== undefined) normalized.availableAt = availableAt
    if (params.orderingKey !== undefined) normalized.orderingKey = this.orderingKey(params.orderingKey)
    return normalized
  }

  /** `findOrCreateMany`'s input: an array of at most 10,000 valid events. */
  enqueueParamsList(value: unknown): EnqueueParams[] {
    if (!Array.isArray(value)) this.#fail(`params must be an array of events; got ${describe(value)}`)
    if (value.length > MAX_LIMIT)
      this.#fail(`params must hold at most ${MAX_LIMIT} events; got ${value.length}`)
    // The position is named only when it is wrong: no label string per valid event.
    return value.map((item, index) =>
      this.#enqueueFields(
        isObject(item) ? (item as Record<string, unknown>) : this.#object(item, `params[${index}]`),
      ),
    )
  }

  /**
   * The inbox's input, normalized; `stream` and `streamSeq` come together or not at all.
   * The id follows the creation rule ({@link newEventId}), as the outbox's does.
   */
  inboxParams(value: unknown): InboxParams {
    const params = this.#object<Record<string, unknown>>(value, 'params')
    const normalized: InboxParams = {
      eventId: this.newEventId(params.eventId),
      subject: this.subject(params.subject),
      payload: this.text(params.payload, 'payload'),
    }
    const headers = this.optionalText(params.headers, 'headers')
    if (headers !== undefined) normalized.headers = headers
    const { stream, streamSeq } = params
    if ((stream === undefined) !== (streamSeq === undefined)) {
      this.#fail('stream and streamSeq must be given together or not at all')
    }
    if (stream !== undefined) {
      if (typeof stream !== 'string' || stream.length === 0 || stream.length > MAX_NAME_LENGTH) {
        this.#fail(
          `stream must be a non-empty string of at most ${MAX_NAME_LENGTH} characters; got ${describe(stream)}`,
        )
      }
      if (typeof streamSeq !== 'number' || !Number.isSafeInteger(streamSeq) || streamSeq < 1) {
        this.#fail(`streamSeq must be a positive safe integer; got ${describe(streamSeq)}`)
      }
      normalized.stream = stream
      normalized.streamSeq = streamSeq
    }
    return normalized
  }

  /** `claim`'s options. */
  claimOptions(value: unknown): Required<Pick<ClaimOptions, 'leaseMs' | 'workerId' | 'keyedDeadLetters'>> & {
    limit: number
  } {
    const options = this.#object<Record<string, unknown>>(value, 'options')
    return {
      limit: this.limit(options.limit),
      leaseMs: this.leaseMs(options.leaseMs),
      workerId: this.workerId(options.workerId),
      keyedDeadLetters: this.keyedDeadLetters(options.keyedDeadLetters),
    }
  }

  /** `claim`'s `keyRun`: the most events of one key per claim, an integer 1..`limit` (default 1). */
  keyRun(value: unknown, limit: number): number {
    if (value === undefined) return 1
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > limit) {
      this.#fail(
        `keyRun must be an integer from 1 to the claim's limit (${limit}); got ${describe(value)}: ` +
          'pass at most limit, or 1 for one event per key',
      )
    }
    return value
  }

  /** `release`'s options: the worker whose claims are given back. */
  releaseOptions(value: unknown): { workerId: string } {
    const options = this.#object<Record<string, unknown>>(value, 'options')
    return { workerId: this.workerId(options.workerId) }
  }

  /** What a keyed dead letter does to its key: `block` (default) or `skip`. */
  keyedDeadLetters(value: unknown): KeyedDeadLetters {
    if (value === undefined) return 'block'
    if (value !== 'block' && value !== 'skip') {
      this.#fail(`keyedDeadLetters must be 'block' or 'skip'; got ${describe(value)}`)
    }
    return value
  }

  /** `renewLease`'s and the inbox `claim`'s options. */
  leaseOptions(value: unknown): RenewLeaseOptions & InboxClaimOptions {
    const options = this.#object<Record<string, unknown>>(value, 'options')
    return { leaseMs: this.leaseMs(options.leaseMs), workerId: this.workerId(options.workerId) }
  }

  /** `retryLater`'s options. */
  retryLaterOptions(value: unknown): { errorMessage: string; delayMs: number; workerId: string | undefined } {
    const options = this.#object<RetryLaterOptions & Record<string, unknown>>(value, 'options')
    return {
      errorMessage: this.text(options.errorMessage, 'errorMessage'),
      delayMs: this.delayMs(options.delayMs),
      workerId: this.optionalWorkerId(options.workerId),
    }
  }

  /** The optional `{ workerId }` of fenced writes. */
  fence(value: unknown): string | undefined {
    if (value === undefined) return undefined
    return this.optionalWorkerId(this.#object<Record<string, unknown>>(value, 'options').workerId)
  }

  /** The optional `{ limit }` of `findPending`. */
  limitOption(value: unknown): number {
    if (value === undefined) return DEFAULT_LIMIT
    return this.limit(this.#object<Record<string, unknown>>(value, 'options').limit)
  }
}
