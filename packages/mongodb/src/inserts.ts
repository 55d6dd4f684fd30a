import type { Collection } from 'mongodb'
import { isDriverError } from './driver-errors.js'

/** MongoDB's (and FerretDB's) duplicate-key error code. */
const DUPLICATE_KEY = 11000

/** True for a duplicate-key error of a single write: the idempotency signal of an insert. */
export const isDuplicateKey = (error: unknown): boolean => {
  if (isDriverError(error, 'MongoBulkWriteError')) return duplicateKeyIndexes(error) !== undefined
  return isDriverError(error, 'MongoServerError') && error.code === DUPLICATE_KEY
}

/**
 * The positions of an unordered bulk write that failed on a duplicate key, when every
 * failure is a duplicate key and nothing else went wrong; otherwise `undefined` (the
 * caller rethrows: only duplicate keys are expected, everything else is a real failure).
 */
const duplicateKeyIndexes = (error: unknown): Set<number> | undefined => {
  if (!isDriverError(error, 'MongoBulkWriteError')) {
    // A server may answer a one-document batch with a plain write error.
    return isDriverError(error, 'MongoServerError') && error.code === DUPLICATE_KEY ? new Set([0]) : undefined
  }
  if (error.err !== undefined) return undefined
  const writeErrors = Array.isArray(error.writeErrors) ? error.writeErrors : [error.writeErrors]
  if (writeErrors.length === 0) return undefined
  const indexes = new Set<number>()
  for (const writeError of writeErrors) {
    if (writeError.code !== DUPLICATE_KEY) return undefined
    indexes.add(writeError.index)
  }
  return indexes
}

/**
 * Inserts documents unordered; answers the positions whose `_id` was already stored. The
 * unique `_id` is the arbiter: of concurrent inserts of one id exactly one succeeds.
 */
export const insertUnordered = async <T extends { _id: string }>(
  collection: Collection<T>,
  docs: readonly T[],
): Promise<Set<number>> => {
  try {
    // biome-ignore lint/suspicious/noExplicitAny: the driver's OptionalUnlessRequiredId cannot be satisfied generically
    await collection.insertMany(docs as any[], { ordered: false })
    return new Set()
  } catch (error) {
    const duplicates = duplicateKeyIndexes(error)
    if (duplicates === undefined) throw error
    return duplicates
  }
}
