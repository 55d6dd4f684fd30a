import { StorageError, TxboxError } from '@txbox/core'
import { ADAPTER } from './postgres-options.js'

/**
 * SQLSTATE codes the adapter recognizes. Idempotency never relies on catching 23505: every
 * insert that may meet an existing key uses ON CONFLICT DO NOTHING, so a unique violation
 * that still reaches the adapter is a real error and is reported as such.
 */
export const SQLSTATE = {
  uniqueViolation: '23505',
  serializationFailure: '40001',
  deadlockDetected: '40P01',
  undefinedTable: '42P01',
  insufficientPrivilege: '42501',
} as const

/** The SQLSTATE of a pg `DatabaseError`, if the error is one. */
export const sqlState = (error: unknown): string | undefined => {
  if (typeof error !== 'object' || error === null) return undefined
  const code = (error as { code?: unknown }).code
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined
}

const hint = (code: string | undefined): string => {
  switch (code) {
    case SQLSTATE.undefinedTable:
      return ' (did you run migrate()?)'
    case SQLSTATE.serializationFailure:
    case SQLSTATE.deadlockDetected:
      return ' (the caller may retry its transaction)'
    default:
      return ''
  }
}

/**
 * Runs one storage operation and maps whatever pg throws to a {@link StorageError} that keeps
 * the driver error as `cause` and names the SQLSTATE; txbox's own errors pass through.
 */
export const withPostgresErrors = async <T>(operation: string, run: () => Promise<T>): Promise<T> => {
  try {
    return await run()
  } catch (error) {
    if (error instanceof TxboxError) throw error
    const code = sqlState(error)
    const message = error instanceof Error ? error.message : String(error)
    const detail = code === undefined ? message : `${message} [SQLSTATE ${code}]${hint(code)}`
    throw new StorageError(ADAPTER, operation, error, detail)
  }
}
