import type { MongoBulkWriteError, MongoError, MongoServerError } from 'mongodb'

interface DriverErrors {
  MongoError: MongoError
  MongoServerError: MongoServerError
  MongoBulkWriteError: MongoBulkWriteError
}

/**
 * Whether `error` is an instance of the driver's class `name`, whichever copy of the
 * driver threw it. `instanceof` would answer false for an error of another copy, and an
 * application may hold one: Mongoose bundles its own mongodb, so a store created on
 * `mongoose.connection.db` sees that copy's errors (a duplicate key would then not be
 * recognised as the idempotency signal it is).
 */
export const isDriverError = <Name extends keyof DriverErrors>(
  error: unknown,
  name: Name,
): error is DriverErrors[Name] => {
  if (!(error instanceof Error)) return false
  for (let proto: unknown = Object.getPrototypeOf(error); proto !== null && proto !== Error.prototype; ) {
    const owner = (proto as { constructor?: { name?: unknown } }).constructor
    if (owner?.name === name) return true
    proto = Object.getPrototypeOf(proto)
  }
  return false
}
