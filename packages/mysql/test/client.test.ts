import { ManualClock, StorageError } from '@txbox/core'
import { describe, expect, it } from 'vitest'
import type { RetryEvent } from '../src/index.js'
import { freshStore, makePool, SKIP, SKIP_REASON } from './helpers.js'

describe.skipIf(SKIP)(`the runner's retries${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`, () => {
  it('runs a write that hit a lock wait timeout again, naming the operation, and succeeds once the lock is gone', async () => {
    // One connection whose lock waits give up after 1 s (the server's minimum).
    const pool = makePool({ connectionLimit: 1 })
    const other = makePool({ connectionLimit: 1 })
    const retries: RetryEvent[] = []
    const holder = await other.getConnection()
    let released: Promise<void> | undefined
    const { store, drop } = await freshStore(pool, {
      clock: new ManualClock(Date.UTC(2026, 0, 1)).now,
      onRetry: (event) => {
        retries.push(event)
        // The holder lets go after the first timeout: the next attempt gets the row.
        released ??= holder.rollback()
      },
    })
    try {
      await pool.query('SET SESSION innodb_lock_wait_timeout = 1')
      await store.outbox.findOrCreate({ eventId: 'locked', subject: 's', payload: 'p' })
      await holder.beginTransaction()
      await holder.query(
        `SELECT seq FROM \`${store.tablePrefix}outbox\` WHERE event_id = 'locked' FOR UPDATE`,
      )
      await store.outbox.markAsSent('locked')
      await released
      expect(retries).toHaveLength(1)
      expect(retries[0]).toMatchObject({ operation: 'outbox.markAsSent', attempt: 1 })
      expect((retries[0]?.error as { errno?: number } | undefined)?.errno).toBe(1205)
      expect((await store.outbox.get('locked'))?.status).toBe('sent')
    } finally {
      holder.release()
      await drop()
      await Promise.all([pool.end(), other.end()])
    }
  })

  it('never retries inside the caller transaction: the conflict reaches the caller, classified', async () => {
    // Three: the holder, the caller, and one for the adapter's own statements (its packet check).
    const pool = makePool({ connectionLimit: 3 })
    const retries: RetryEvent[] = []
    const { store, drop } = await freshStore(pool, { onRetry: (event) => retries.push(event) })
    const holder = await pool.getConnection()
    const caller = await pool.getConnection()
    try {
      await store.outbox.findOrCreate({ eventId: 'held', subject: 's', payload: 'p' })
      await holder.beginTransaction()
      await holder.query(`SELECT seq FROM \`${store.tablePrefix}outbox\` WHERE event_id = 'held' FOR UPDATE`)
      await caller.query('SET SESSION innodb_lock_wait_timeout = 1')
      await caller.beginTransaction()
      const error = await store.outbox
        .findOrCreate({ eventId: 'held', subject: 's', payload: 'p' }, { tx: caller })
        .catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(StorageError)
      expect(error).toMatchObject({ reason: 'conflict', retryable: true, operation: 'outbox.findOrCreate' })
      expect(retries).toEqual([])
    } finally {
      await caller.rollback()
      await caller.query('SET SESSION innodb_lock_wait_timeout = DEFAULT')
      await holder.rollback()
      caller.release()
      holder.release()
      await drop()
      await pool.end()
    }
  })
})
