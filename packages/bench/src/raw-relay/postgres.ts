import type pg from 'pg'
import { RAW_LEASE_MS, type RawEvent, type RawOutbox } from './types.js'

/**
 * The adapter's claim by hand: the due rows in seq order, skipping rows other claimers hold,
 * returning only what a relay needs to publish; then one mark for the acknowledged ones.
 */
export const postgresRawOutbox = (pool: pg.Pool, schema: string): RawOutbox => {
  const outbox = `"${schema}"."txbox_outbox"`
  const claim = `UPDATE ${outbox} SET status = 'publishing', claimed_by = $1, claimed_at = $2, lease_until = $3
    WHERE seq IN (
      SELECT seq FROM ${outbox} WHERE status = 'pending' AND available_at <= $2
      ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED)
    RETURNING event_id, subject, payload, headers`
  const markSent = `UPDATE ${outbox} SET status = 'sent', sent_at = $2, claimed_by = NULL, lease_until = NULL
    WHERE event_id = ANY($1::text[]) AND claimed_by = $3`
  return {
    async claim(workerId, limit) {
      const now = new Date()
      const { rows } = await pool.query<{
        event_id: string
        subject: string
        payload: string
        headers: string | null
      }>(claim, [workerId, now, new Date(now.getTime() + RAW_LEASE_MS), limit])
      return rows.map(
        (row): RawEvent => ({
          eventId: row.event_id,
          subject: row.subject,
          payload: row.payload,
          headers: row.headers ?? undefined,
        }),
      )
    },
    async markSent(workerId, eventIds) {
      await pool.query(markSent, [eventIds, new Date(), workerId])
    },
  }
}
