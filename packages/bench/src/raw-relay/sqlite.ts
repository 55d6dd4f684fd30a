import type Database from 'better-sqlite3'
import { RAW_LEASE_MS, type RawOutbox } from './types.js'

/**
 * One UPDATE ... RETURNING claims (atomic on its own: SQLite has one writer), one UPDATE with
 * the ids as a JSON array marks; both prepared once per connection.
 */
export const sqliteRawOutbox = (db: Database.Database, prefix: string): RawOutbox => {
  const outbox = `${prefix}outbox`
  const claim =
    db.prepare(`UPDATE ${outbox} SET status = 'publishing', claimed_by = ?, claimed_at = ?, lease_until = ?
      WHERE seq IN (SELECT seq FROM ${outbox} WHERE status = 'pending' AND available_at <= ? ORDER BY seq LIMIT ?)
      RETURNING event_id, subject, payload, headers`)
  const markSent =
    db.prepare(`UPDATE ${outbox} SET status = 'sent', sent_at = ?, claimed_by = NULL, lease_until = NULL
      WHERE event_id IN (SELECT value FROM json_each(?)) AND claimed_by = ?`)
  return {
    async claim(workerId, limit) {
      const now = Date.now()
      const rows = claim.all(workerId, now, now + RAW_LEASE_MS, now, limit) as Array<{
        event_id: string
        subject: string
        payload: string
        headers: string | null
      }>
      return rows.map((row) => ({
        eventId: row.event_id,
        subject: row.subject,
        payload: row.payload,
        headers: row.headers ?? undefined,
      }))
    },
    async markSent(workerId, eventIds) {
      markSent.run(Date.now(), JSON.stringify(eventIds), workerId)
    },
  }
}
