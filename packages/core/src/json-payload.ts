import { ValidationError } from './errors.js'
import type { EnqueueParams } from './outbox.js'

const COMPONENT = 'json-payload'

/** Options of {@link jsonPayload}. */
export interface JsonPayloadOptions<T> {
  /** Named in error messages (e.g. `OrderCreated`), so a bad payload says which kind it is. */
  name?: string | undefined
  /**
   * Checks a decoded value and returns it typed (a zod schema's `parse`, a hand-written
   * guard); it throws to refuse. Without it `decode` trusts the producer: the JSON is
   * parsed and typed as `T`, not checked.
   */
  validate?: ((value: unknown) => T) | undefined
}

/** An event as read back (an inbox or outbox event): what {@link JsonPayload.decode} needs. */
export interface StoredPayload {
  eventId: string
  payload: string
}

/** A typed JSON codec for one kind of event payload. Build it with {@link jsonPayload}. */
export interface JsonPayload<T> {
  /**
   * The JSON text of `value`. Throws `ValidationError` (naming the path) for anything JSON
   * would drop or change instead of keeping: `undefined`, functions, symbols, BigInt, NaN
   * and ±Infinity, sparse arrays, Dates, Maps, Sets and other class instances, symbol keys,
   * cycles. One documented exception: `-0` is written as `0`.
   */
  encode(value: T): string
  /**
   * The value carried by an event's payload, typed `T` (checked by `validate` when given).
   * Throws `ValidationError` naming the event id when the payload is not JSON, or when
   * `validate` refuses it.
   */
  decode(event: StoredPayload): T
  /** Enqueue parameters with `payload` encoded: `outbox.findOrCreate(codec.event({ eventId, subject, payload }), { tx })`. */
  event(params: Omit<EnqueueParams, 'payload'> & { payload: T }): EnqueueParams
}

const kindOf = (value: unknown): string => {
  if (value === null) return 'null'
  if (typeof value === 'number') return String(value)
  if (typeof value !== 'object') return typeof value
  const name = (Object.getPrototypeOf(value) as { constructor?: { name?: unknown } } | null)?.constructor
    ?.name
  return typeof name === 'string' && name.length > 0 ? `a ${name}` : 'an object with a custom prototype'
}

const fix = (value: unknown): string => {
  if (value instanceof Date) return '; pass value.toISOString() and parse it back in the handler'
  if (typeof value === 'bigint') return '; pass it as a string (value.toString())'
  if (value instanceof Map) return '; pass Object.fromEntries(map) or [...map]'
  if (value instanceof Set) return '; pass [...set]'
  if (value === undefined) return '; leave the property out or use null'
  return ''
}

const isPlainObject = (value: object): boolean => {
  const prototype = Object.getPrototypeOf(value) as unknown
  return prototype === Object.prototype || prototype === null
}

/** Throws unless `value` is JSON data that `JSON.parse(JSON.stringify(value))` gives back as it is. */
const assertJsonData = (value: unknown, path: string, ancestors: object[], name: string): void => {
  const refuse = (what: string, hint = ''): never => {
    throw new ValidationError(
      COMPONENT,
      `${name}: ${path} is ${what}, which JSON cannot carry unchanged${hint}`,
    )
  }
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return
    case 'number':
      if (!Number.isFinite(value)) refuse(kindOf(value), ' (it would become null)')
      return
    case 'undefined':
      refuse('undefined', fix(value))
      return
    case 'bigint':
      refuse('a BigInt', fix(value))
      return
    case 'function':
    case 'symbol':
      refuse(`a ${typeof value}`)
      return
  }
  if (value === null) return
  const object = value as object
  if (ancestors.includes(object)) refuse('a reference to one of its own ancestors (a cycle)')
  if (Array.isArray(object)) {
    const extraKeys = Object.keys(object).length - object.length
    for (let index = 0; index < object.length; index++) {
      if (!(index in object)) refuse('a sparse array (a hole at this index)', ' (holes would become null)')
    }
    if (extraKeys > 0 || Object.getOwnPropertySymbols(object).length > 0)
      refuse('an array with extra properties', ' (JSON keeps only the elements)')
    ancestors.push(object)
    object.forEach((item, index) => {
      assertJsonData(item, `${path}[${index}]`, ancestors, name)
    })
    ancestors.pop()
    return
  }
  if (!isPlainObject(object)) refuse(kindOf(object), fix(object))
  if (Object.getOwnPropertySymbols(object).length > 0)
    refuse('an object with symbol keys', ' (they would be dropped)')
  if (Object.getOwnPropertyNames(object).length !== Object.keys(object).length)
    refuse('an object with non-enumerable properties', ' (they would be dropped)')
  ancestors.push(object)
  for (const [key, item] of Object.entries(object)) {
    assertJsonData(
      item,
      `${path}${/^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`}`,
      ancestors,
      name,
    )
  }
  ancestors.pop()
}

/**
 * A typed JSON codec for one kind of payload, so producers and handlers stop hand-writing
 * `JSON.stringify`/`JSON.parse`:
 *
 * ```ts
 * const OrderCreated = jsonPayload<{ orderId: string; total: number }>({ name: 'OrderCreated' })
 * await store.outbox.findOrCreate(OrderCreated.event({ eventId, subject: 'orders.created', payload: order }), { tx })
 * // in the inbox handler:
 * const order = OrderCreated.decode(event) // { orderId: string; total: number }
 * ```
 */
export const jsonPayload = <T>(options: JsonPayloadOptions<T> = {}): JsonPayload<T> => {
  if (typeof options !== 'object' || options === null)
    throw new ValidationError(COMPONENT, 'options must be an object ({ name?, validate? })')
  if (options.validate !== undefined && typeof options.validate !== 'function')
    throw new ValidationError(COMPONENT, 'options.validate must be a function (value: unknown) => T')
  const name = options.name ?? 'payload'
  const validate = options.validate
  const encode = (value: T): string => {
    assertJsonData(value, 'the value', [], name)
    return JSON.stringify(value)
  }
  return {
    encode,
    decode(event) {
      if (typeof event !== 'object' || event === null || typeof event.payload !== 'string')
        throw new ValidationError(
          COMPONENT,
          `${name}: decode takes the event ({ eventId, payload }), not its payload alone`,
        )
      let parsed: unknown
      try {
        parsed = JSON.parse(event.payload)
      } catch (error) {
        throw new ValidationError(
          COMPONENT,
          `${name}: the payload of event ${JSON.stringify(event.eventId)} is not valid JSON (${(error as Error).message}); it can never be decoded: fix the producer, then redrive or drop the event`,
          { cause: error },
        )
      }
      if (validate === undefined) return parsed as T
      try {
        return validate(parsed)
      } catch (error) {
        throw new ValidationError(
          COMPONENT,
          `${name}: the payload of event ${JSON.stringify(event.eventId)} was refused by validate: ${error instanceof Error ? error.message : String(error)}`,
          { cause: error },
        )
      }
    },
    event(params) {
      return { ...params, payload: encode(params.payload) }
    },
  }
}
