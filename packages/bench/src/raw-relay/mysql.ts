import type { Pool, RowDataPacket } from 'mysql2/promise'
import { RAW_LEASE_MS, type RawEvent, type RawOutbox } from './types.js'

/** DATETIME(3) text in UTC, as the adapter stores it. */
export const mySqlDateTime = (ms: number = Date.now()): string =>
  new Date(ms).toISOString().slice(0, 23).replace('T', ' ')

/** InnoDB picks a deadlock victim among concurrent claimers; a real claimer retries it, so the raw one does too. */
export const retryDeadlocks = async <T>(fn: () => Promise<T>): Promise<T> => {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn()
    } catch (error) {
      const errno = (error as { errno?: number }).errno
      if ((errno !== 1213 && errno !== 1205) || attempt >= 10) throw error
    }
  }
}

/**
 * MySQL has no UPDATE ... RETURNING: SELECT ... FOR UPDATE SKIP LOCKED then UPDATE, in one
 * short transaction (as the adapter does); then one mark for the acknowledged ones.
 */
export const mySqlRawOutbox = (pool: Pool, prefix: string): RawOutbox => {
  const outbox = `\`${prefix}outbox\``
  const selectDue = `SELECT seq, event_id, subject, payload, headers FROM ${outbox} FORCE INDEX (ix_claim)
    WHERE status = 'pending' AND available_at <= ? ORDER BY seq LIMIT ? FOR UPDATE SKIP LOCKED`
  const claimOnce = async (workerId: string, limit: number): Promise<RawEvent[]> => {
    const connection = await pool.getConnection()
    try {
      await connection.beginTransaction()
      const now = Date.now()
      const [rows] = await connection.query<RowDataPacket[]>(selectDue, [mySqlDateTime(now), limit])
      if (rows.length > 0)
        await connection.query(
          `UPDATE ${outbox} SET status = 'publishing', claimed_by = ?, claimed_at = ?, lease_until = ? WHERE seq IN (?)`,
          [
            workerId,
            mySqlDateTime(now),
            mySqlDateTime(now + RAW_LEASE_MS),
            rows.map((row) => row.seq as number),
          ],
        )
      await connection.commit()
      return rows.map((row) => ({
        eventId: String(row.event_id),
        subject: String(row.subject),
        payload: String(row.payload),
        headers: row.headers === null ? undefined : String(row.headers),
      }))
    } catch (error) {
      await connection.rollback()
      throw error
    } finally {
      connection.release()
    }
  }
  return {
    claim: (workerId, limit) => retryDeadlocks(() => claimOnce(workerId, limit)),
    async markSent(workerId, eventIds) {
      await retryDeadlocks(() =>
        pool.query(
          `UPDATE ${outbox} SET status = 'sent', sent_at = ?, claimed_by = NULL, lease_until = NULL WHERE event_id IN (?) AND claimed_by = ?`,
          [mySqlDateTime(), eventIds, workerId],
        ),
      )
    },
  }
}
