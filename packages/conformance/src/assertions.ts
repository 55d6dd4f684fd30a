import { AssertionError, deepStrictEqual, strictEqual } from 'node:assert/strict'
import type { InboxEvent, OutboxEvent, TxboxErrorCode } from '@txbox/core'
import { must, recordOrThrow } from './checks.js'
import type { ConformanceFixture } from './target.js'

/**
 * Assertions shared by the cases. They use `node:assert` so the suite runs the same under
 * vitest and under the CLI's own runner. Errors are recognised by `name` and `code` rather
 * than `instanceof`, so a third-party adapter built against another copy of core passes.
 *
 * Inside a running case a failed `expect*` check is recorded and the case goes on (see
 * checks.ts); `must*` and `stored*` end the case, for checks the rest depends on.
 */

/** Runs one node:assert check, recording its failure in the running case (stack cut at `from`). */
const softly = (from: (...args: never[]) => unknown, check: () => void): void => {
  try {
    check()
  } catch (error) {
    recordOrThrow(error, from)
  }
}

/** Asserts `actual === expected` (Object.is); a failure is recorded and the case goes on. */
export const expectSame = <T>(actual: unknown, expected: T, message?: string | Error): void =>
  softly(expectSame, () => strictEqual(actual, expected, message))

/** Asserts deep strict equality; a failure is recorded and the case goes on. */
export const expectEqual = <T>(actual: unknown, expected: T, message?: string | Error): void =>
  softly(expectEqual, () => deepStrictEqual(actual, expected, message))

/** Like {@link expectSame}, but a failure ends the case: what follows depends on it. */
export const mustBeSame: <T>(actual: unknown, expected: T, message?: string | Error) => asserts actual is T =
  (actual, expected, message) => must(() => strictEqual(actual, expected, message))

/** Like {@link expectEqual}, but a failure ends the case: what follows depends on it. */
export const mustEqual: <T>(actual: unknown, expected: T, message?: string | Error) => asserts actual is T = (
  actual,
  expected,
  message,
) => must(() => deepStrictEqual(actual, expected, message))

export { must }

const ERROR_CODES: Record<string, TxboxErrorCode> = {
  ValidationError: 'VALIDATION',
  EventNotFoundError: 'EVENT_NOT_FOUND',
  LeaseLostError: 'LEASE_LOST',
  PayloadTooLargeError: 'PAYLOAD_TOO_LARGE',
  StorageError: 'STORAGE',
}

/** Awaits `action` and checks it failed with the named txbox error. */
export const expectTxboxError = async (
  name: keyof typeof ERROR_CODES,
  action: () => Promise<unknown>,
  label: string,
): Promise<void> => {
  try {
    await txboxErrorOf(name, action, label)
  } catch (error) {
    recordOrThrow(error, expectTxboxError)
  }
}

const txboxErrorOf = async (
  name: keyof typeof ERROR_CODES,
  action: () => Promise<unknown>,
  label: string,
): Promise<void> => {
  let outcome: unknown
  try {
    outcome = await action()
  } catch (error) {
    const e = error as { name?: unknown; code?: unknown; message?: unknown }
    if (e?.name !== name || e.code !== ERROR_CODES[name]) {
      throw new AssertionError({
        message: `${label}: expected ${name}, got ${e?.name ?? typeof error}: ${String(e?.message ?? error)}`,
      })
    }
    if (typeof e.message !== 'string' || !/^\[txbox\] \[[^\]]+\] /.test(e.message)) {
      throw new AssertionError({
        message: `${label}: message must start with "[txbox] [<adapter>] ", got ${String(e.message)}`,
      })
    }
    return
  }
  throw new AssertionError({
    message: `${label}: expected ${name}, but it resolved with ${describeValue(outcome)}`,
  })
}

const describeValue = (value: unknown): string => {
  try {
    const text = JSON.stringify(value)
    return text === undefined ? String(value) : text.length > 200 ? `${text.slice(0, 200)}...` : text
  } catch {
    return String(value)
  }
}

/** The epoch ms of a date, or undefined; for comparing optional timestamps. */
export const ms = (date: Date | undefined | null): number | undefined =>
  date instanceof Date ? date.getTime() : date === undefined || date === null ? undefined : Number.NaN

/** Asserts the stored row exists and returns it. */
export const storedOutbox = async (store: ConformanceFixture, eventId: string): Promise<OutboxEvent> => {
  const row = await store.oracle.outbox(eventId)
  if (!row) throw new AssertionError({ message: `oracle: outbox event ${eventId} is not stored` })
  return row
}

/** Asserts the stored inbox row exists and returns it. */
export const storedInbox = async (store: ConformanceFixture, eventId: string): Promise<InboxEvent> => {
  const row = await store.oracle.inbox(eventId)
  if (!row) throw new AssertionError({ message: `oracle: inbox event ${eventId} is not stored` })
  return row
}

/** Asserts that the lease fields are cleared (claimedAt may stay as history). */
export const expectNoLease = (
  event: { claimedBy?: string | undefined; leaseUntil?: Date | undefined },
  label: string,
) => {
  softly(expectNoLease, () => strictEqual(event.claimedBy, undefined, `${label}: claimedBy must be cleared`))
  softly(expectNoLease, () =>
    strictEqual(event.leaseUntil, undefined, `${label}: leaseUntil must be cleared`),
  )
}

/** Asserts two id lists are equal, with a readable message. */
export const expectIds = (
  actual: readonly { eventId: string }[] | readonly string[],
  expected: readonly string[],
  label: string,
) => {
  const ids = actual.map((item) => (typeof item === 'string' ? item : item.eventId))
  softly(expectIds, () => deepStrictEqual(ids, [...expected], label))
}
