import { MongoBulkWriteError, MongoServerError } from 'mongodb'
import mongoose from 'mongoose'
import { describe, expect, it } from 'vitest'
import { isDriverError } from '../src/driver-errors.js'
import { classifyMongoDbError } from '../src/errors.js'

// Mongoose bundles its own copy of the driver (here mongodb 7.8 beside the adapter's 7.9).
const foreign = mongoose.mongo

describe('driver errors of any copy of the mongodb driver', () => {
  it('are recognised by class name along the prototype chain, not by instanceof', () => {
    const local = new MongoServerError({ message: 'conflict', code: 112 })
    const other = new foreign.MongoServerError({ message: 'conflict', code: 112 })
    expect(other instanceof MongoServerError).toBe(foreign.MongoServerError === MongoServerError)
    for (const error of [local, other]) {
      expect(isDriverError(error, 'MongoServerError')).toBe(true)
      expect(isDriverError(error, 'MongoError')).toBe(true)
      expect(isDriverError(error, 'MongoBulkWriteError')).toBe(false)
      expect(classifyMongoDbError(error)).toMatchObject({ reason: 'conflict', retryable: true })
    }
    const bulk = new foreign.MongoBulkWriteError(
      { message: 'dup', code: 11000, writeErrors: [] } as never,
      {} as never,
    )
    expect(isDriverError(bulk, 'MongoBulkWriteError')).toBe(true)
    expect(isDriverError(bulk, 'MongoServerError')).toBe(true)
    expect(MongoBulkWriteError.name).toBe('MongoBulkWriteError')
  })

  it('are not confused with other errors', () => {
    class MongoServerErrorLookalike extends Error {}
    expect(isDriverError(new MongoServerErrorLookalike('x'), 'MongoServerError')).toBe(false)
    expect(isDriverError({ name: 'MongoServerError', code: 112 }, 'MongoServerError')).toBe(false)
    expect(isDriverError(new Error('x'), 'MongoError')).toBe(false)
    expect(classifyMongoDbError(new Error('x'))).toMatchObject({ reason: 'unknown' })
  })
})
