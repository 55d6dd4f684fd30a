import { checkMutant, runMutant, type StatementMutant } from '@txbox/conformance'
import { describe, expect, it } from 'vitest'
import { createConformanceTarget } from '../src/conformance-target.js'
import { historySql, inboxSql, insertOutboxRows, outboxSql, tablesFor } from '../src/sql.js'

/**
 * Hand-written mutants of the SQL StrykerJS cannot edit (to it a statement is one string):
 * each one is a mistake a real author could make in the claim, the fence, cleanup or
 * resetStale, and names the conformance cases that must fail on a store running it. A
 * mutant keeps the statement's bind parameters (`(claimed_by = ? OR 1)` rather than dropping
 * `claimed_by = ?`), since a changed count would fail every call instead of misbehaving.
 * Documented in docs/CONFORMANCE.md ("Hand-written SQL and Lua mutants").
 */

/** Every statement the store prepares, by name. */
const statements = (): Record<string, string> => {
  const tables = tablesFor('txbox_')
  const named: Record<string, string> = {}
  for (const [prefix, group] of [
    ['outbox', outboxSql(tables)],
    ['inbox', inboxSql(tables)],
    ['history', historySql(tables)],
  ] as const) {
    for (const [name, text] of Object.entries(group)) named[`${prefix}.${name}`] = text
  }
  // Sized by its row count; the mutants edit text every size shares.
  named['outbox.insertRows'] = insertOutboxRows(tables, 2)
  return named
}

const SENT_AND_FAILED = ['outbox.markAsSentFenced', 'outbox.markAsFailedFenced']

const SQLITE_MUTANTS: readonly StatementMutant[] = [
  {
    id: 'claim: due pending at exactly now not claimable (<= → <)',
    statements: ['outbox.claim'],
    find: "(status = 'pending' AND available_at <= ?)",
    replace: "(status = 'pending' AND available_at < ?)",
    kills: ['outbox.order.frozen-clock', 'outbox.claim.lease-expiry-reclaim'],
  },
  {
    id: 'claim: lease expiring at exactly now not reclaimable (<= → <)',
    statements: ['outbox.claim'],
    find: "(status = 'publishing' AND lease_until <= ?)",
    replace: "(status = 'publishing' AND lease_until < ?)",
    kills: ['outbox.claim.lease-expiry-reclaim', 'outbox.claim.fencing'],
  },
  {
    id: 'claim: lease-expiry branch dropped',
    statements: ['outbox.claim'],
    find: "OR (status = 'publishing' AND lease_until <= ?)",
    replace: 'OR (0 AND lease_until <= ?)',
    kills: ['outbox.claim.lease-expiry-reclaim', 'outbox.claim.fencing'],
  },
  {
    id: 'claim: ORDER BY seq reversed',
    statements: ['outbox.claim'],
    find: 'ORDER BY seq LIMIT ?\n)',
    replace: 'ORDER BY seq DESC LIMIT ?\n)',
    kills: ['outbox.order.claim-order', 'outbox.order.frozen-clock'],
  },
  {
    id: 'claim: ORDER BY seq dropped',
    statements: ['outbox.claim'],
    find: 'ORDER BY seq LIMIT ?\n)',
    replace: 'LIMIT ?\n)',
    kills: [],
    survives: {
      reason:
        'not equivalent, but INDEXED BY makes the subquery walk the claimable index, which is in seq order, so rows still come out in enqueue order; without the index hint it would show',
      cases: ['outbox.order.not-physical', 'outbox.order.claim-order'],
    },
  },
  {
    id: 'claim: LIMIT ignored',
    statements: ['outbox.claim'],
    find: 'ORDER BY seq LIMIT ?\n)',
    replace: 'ORDER BY seq LIMIT 10000 + ?\n)',
    kills: ['outbox.order.claim-order', 'outbox.order.frozen-clock'],
  },
  {
    id: 'fence (markAsSent, markAsFailed): claimed_by = ? ignored',
    statements: SENT_AND_FAILED,
    find: "\nWHERE event_id = ? AND status = 'publishing' AND claimed_by = ?",
    replace: "\nWHERE event_id = ? AND status = 'publishing' AND (claimed_by = ? OR 1)",
    kills: ['outbox.claim.fencing', 'outbox.claim.fenced-after-release'],
  },
  {
    id: 'fence (retryLater): claimed_by = ? ignored',
    statements: ['outbox.retryLaterFenced'],
    find: "lease_until = NULL WHERE event_id = ? AND status = 'publishing' AND claimed_by = ?",
    replace: "lease_until = NULL WHERE event_id = ? AND status = 'publishing' AND (claimed_by = ? OR 1)",
    kills: ['outbox.claim.fencing'],
  },
  {
    id: "fence (markAsSent, markAsFailed): status = 'publishing' dropped",
    statements: SENT_AND_FAILED,
    find: "\nWHERE event_id = ? AND status = 'publishing' AND claimed_by = ?",
    replace: '\nWHERE event_id = ? AND claimed_by = ?',
    kills: [],
    survives: {
      reason:
        "equivalent: every statement that moves an event out of 'publishing' clears claimed_by, so claimed_by = ? already implies status = 'publishing'",
      cases: ['outbox.claim.fencing', 'outbox.claim.fenced-after-release'],
    },
  },
  {
    id: 'renewLease: claimed_by = ? ignored',
    statements: ['outbox.renewLeases'],
    find: "lease_until = ?\nWHERE event_id IN (SELECT value FROM json_each(?)) AND +status = 'publishing' AND claimed_by = ?",
    replace:
      "lease_until = ?\nWHERE event_id IN (SELECT value FROM json_each(?)) AND +status = 'publishing' AND (claimed_by = ? OR 1)",
    kills: ['outbox.claim.renew-lease'],
  },
  {
    id: 'markManyAsSent (fenced): claimed_by = ? ignored',
    statements: ['outbox.markManyAsSentFenced'],
    find: "sent_at = ?, claimed_by = NULL, lease_until = NULL\nWHERE event_id IN (SELECT value FROM json_each(?)) AND +status = 'publishing' AND claimed_by = ?",
    replace:
      "sent_at = ?, claimed_by = NULL, lease_until = NULL\nWHERE event_id IN (SELECT value FROM json_each(?)) AND +status = 'publishing' AND (claimed_by = ? OR 1)",
    kills: ['outbox.claim.fencing', 'outbox.claim.fenced-after-release'],
  },
  {
    id: "markManyAsSent (fenced): status = 'publishing' dropped",
    statements: ['outbox.markManyAsSentFenced'],
    find: "sent_at = ?, claimed_by = NULL, lease_until = NULL\nWHERE event_id IN (SELECT value FROM json_each(?)) AND +status = 'publishing' AND claimed_by = ?",
    replace:
      'sent_at = ?, claimed_by = NULL, lease_until = NULL\nWHERE event_id IN (SELECT value FROM json_each(?)) AND claimed_by = ?',
    kills: [],
    survives: {
      reason:
        "equivalent, as for markAsSent: every statement that moves an event out of 'publishing' clears claimed_by",
      cases: ['outbox.claim.fencing', 'outbox.claim.fenced-after-release'],
    },
  },
  {
    id: 'markManyAsSent: lease left on the sent events',
    statements: ['outbox.markManyAsSent', 'outbox.markManyAsSentFenced'],
    find: 'sent_at = ?, claimed_by = NULL, lease_until = NULL\nWHERE event_id IN',
    replace: 'sent_at = ?\nWHERE event_id IN',
    kills: ['outbox.claim.fencing'],
  },
  {
    id: 'insert: a second enqueue of a stored id overwrites it (first write loses)',
    statements: ['outbox.insertRows'],
    find: "'pending', ?, 0, ?)\nON CONFLICT (event_id) DO NOTHING",
    replace: "'pending', ?, 0, ?)\nON CONFLICT (event_id) DO UPDATE SET payload = excluded.payload",
    kills: [
      'outbox.idempotency.first-write-wins',
      'outbox.idempotency.concurrent-same-id',
      'outbox.idempotency.many',
      'outbox.tx.repeat-first-write-wins',
      'outbox.tx.two-open-transactions',
    ],
  },
  {
    id: 'inbox insert: a redelivery is returned as a new event (DO NOTHING → DO UPDATE)',
    statements: ['inbox.insert'],
    find: 'DO NOTHING\nRETURNING seq, event_id, subject, payload, headers, stream',
    replace:
      'DO UPDATE SET deliveries = deliveries\nRETURNING seq, event_id, subject, payload, headers, stream',
    kills: [
      'inbox.failed.listing',
      'inbox.claim.records-claim-time',
      'inbox.dedupe.find-or-create',
      'inbox.dedupe.concurrent-same-id',
      'inbox.dedupe.stream-seq',
      'inbox.dedupe.folded-ids',
      'inbox.claim.processed-is-final',
      'inbox.claim.failed-retries',
      'inbox.claim.expired-lease',
      'inbox.reset-stale.claim-time',
      'inbox.claim.exactly-one-across-connections',
    ],
  },
  {
    id: 'markAsSent (fenced): lease left on the sent event',
    statements: ['outbox.markAsSentFenced'],
    find: "sent_at = ?, claimed_by = NULL, lease_until = NULL\nWHERE event_id = ? AND status = 'publishing'",
    replace: "sent_at = ?\nWHERE event_id = ? AND status = 'publishing'",
    kills: ['outbox.claim.fenced-after-release', 'outbox.fields.absent-undefined'],
  },
  {
    id: 'resetStale: exact cutoff reset (< → <=)',
    statements: ['outbox.resetStale'],
    find: 'claimed_at < ?',
    replace: 'claimed_at <= ?',
    kills: ['outbox.reset-stale.exact-cutoff'],
  },
  {
    id: 'resetStale: enqueued_at instead of claimed_at',
    statements: ['outbox.resetStale'],
    find: 'claimed_at < ?',
    replace: 'enqueued_at < ?',
    kills: ['outbox.reset-stale.claim-time-not-enqueue-time', 'outbox.reset-stale.live-claims-untouched'],
  },
  {
    id: "resetStale: status = 'publishing' dropped",
    statements: ['outbox.resetStale'],
    find: "WHERE status = 'publishing' AND claimed_at < ?",
    replace: 'WHERE claimed_at < ?',
    kills: ['outbox.reset-stale.exact-cutoff', 'outbox.claim.fenced-after-release'],
  },
  {
    id: 'cleanup: exact cutoff deleted (< → <=)',
    statements: ['outbox.cleanupBatch'],
    find: 'sent_at < ?',
    replace: 'sent_at <= ?',
    kills: ['outbox.cleanup.exact-cutoff', 'outbox.cleanup.sent-only'],
  },
  {
    id: 'cleanup: a tenth of the batch deleted, so the loop stops early',
    statements: ['outbox.cleanupBatch'],
    find: 'sent_at < ? LIMIT ?\n)',
    replace: 'sent_at < ? LIMIT ? / 10\n)',
    kills: ['outbox.cleanup.batches'],
  },
  {
    id: 'inbox cleanup: exact cutoff deleted (< → <=)',
    statements: ['inbox.cleanupBatch'],
    find: 'processed_at < ?',
    replace: 'processed_at <= ?',
    kills: ['inbox.cleanup.exact-cutoff'],
  },
  {
    id: 'inbox resetStale: exact cutoff reset (< → <=)',
    statements: ['inbox.resetStale'],
    find: 'received_at) < ?',
    replace: 'received_at) <= ?',
    kills: ['inbox.reset-stale.exact-cutoff'],
  },
  {
    id: 'inbox resetStale: received_at instead of the claim time',
    statements: ['inbox.resetStale'],
    find: 'COALESCE(claimed_at, received_at) < ?',
    replace: 'received_at < ?',
    kills: ['inbox.reset-stale.claim-time'],
  },
  {
    id: 'claim: a dead letter never holds its key (its key_seq compared with 0)',
    statements: ['outbox.claim'],
    find: 'failed.key_seq < candidate.key_seq',
    replace: 'failed.key_seq < 0',
    kills: ['outbox.ordering.dead-letter-policy'],
  },
  {
    id: "claim: keyedDeadLetters inverted ('block' read as 'skip' and back)",
    statements: ['outbox.claim'],
    find: '? = 0 OR NOT EXISTS',
    replace: '? = 1 OR NOT EXISTS',
    kills: ['outbox.ordering.dead-letter-policy'],
  },
  {
    id: 'claimRuns: a run not capped at keyRun',
    statements: ['outbox.claimRuns'],
    find: 'WHERE run.n < ? AND',
    replace: 'WHERE run.n < 10000 + ? AND',
    kills: ['outbox.key-runs.one-claimer'],
  },
  {
    id: 'claimRuns: a run passes a not-due event',
    statements: ['outbox.claimRuns'],
    find: "(next.status = 'pending' AND next.available_at <= ?)",
    replace: "(next.status = 'pending' AND (next.available_at <= ? OR 1))",
    kills: ['outbox.key-runs.stops'],
  },
  {
    id: 'claimRuns: a run passes a dead letter of its key',
    statements: ['outbox.claimRuns'],
    find: 'AND failed.key_seq > run.key_seq AND failed.ordering_key IS NOT NULL',
    replace: 'AND failed.key_seq > run.key_seq AND 0',
    kills: ['outbox.key-runs.stops'],
  },
  {
    id: 'claimRuns: the rest of an expired run not taken with it',
    statements: ['outbox.claimRuns'],
    find: "OR (next.status = 'publishing' AND next.lease_until <= ?)",
    replace: 'OR (0 AND next.lease_until <= ?)',
    kills: ['outbox.key-runs.expired-run'],
  },
  {
    id: 'claimRuns: the limit cuts the heads only',
    statements: ['outbox.claimRuns'],
    find: 'ORDER BY head, n LIMIT ?\n)',
    replace: 'ORDER BY head, n LIMIT 10000 + ?\n)',
    kills: ['outbox.key-runs.limit'],
  },
  {
    id: 'claimRuns: runs taken in seq order, not each head with its run',
    statements: ['outbox.claimRuns'],
    find: 'ORDER BY head, n LIMIT ?\n)',
    replace: 'ORDER BY seq, n LIMIT ?\n)',
    kills: ['outbox.key-runs.limit'],
  },
  {
    id: 'release: claimed_by = ? ignored',
    statements: ['outbox.release'],
    find: "'pending', claimed_by = NULL, lease_until = NULL\nWHERE event_id IN (SELECT value FROM json_each(?)) AND +status = 'publishing' AND claimed_by = ?",
    replace:
      "'pending', claimed_by = NULL, lease_until = NULL\nWHERE event_id IN (SELECT value FROM json_each(?)) AND +status = 'publishing' AND (claimed_by = ? OR 1)",
    kills: ['outbox.key-runs.release', 'outbox.key-runs.expired-run'],
  },
]

describe('SQLite SQL mutants fail their cases', () => {
  const all = statements()
  for (const mutant of SQLITE_MUTANTS) {
    it(mutant.id, async () => {
      checkMutant(mutant, all)
      const run = await runMutant(mutant, (rewrite) => createConformanceTarget({ rewriteStatement: rewrite }))
      expect(run.hits, 'the mutated statement never ran').toBeGreaterThan(0)
      if (mutant.kills.length > 0) expect(run.failed).toEqual(mutant.kills)
      else expect(run.passed).toEqual(mutant.survives?.cases)
    })
  }
})
