import { checkMutant, runMutant, type StatementMutant } from '@txbox/conformance'
import { describe, expect, it } from 'vitest'
import { createConformanceTarget } from '../src/conformance-target.js'
import { claimQuery, inboxSql, outboxSql } from '../src/sql.js'
import { noServer, skipReason, url } from './helpers.js'

/**
 * Hand-written mutants of the SQL StrykerJS cannot edit (to it a statement is one string):
 * each one is a mistake a real author could make in the claim, the fence, cleanup or
 * resetStale, and names the conformance cases that must fail on a store running it. The
 * table is documented in docs/CONFORMANCE.md ("Hand-written SQL and Lua mutants").
 */

/** Every statement of the adapter by name; the claim and the insert are built with sample values. */
const statements = (): Record<string, string> => {
  const outbox = outboxSql('s', 'txbox_')
  const inbox = inboxSql('s', 'txbox_')
  const named: Record<string, string> = {}
  for (const [name, value] of Object.entries(outbox)) {
    if (typeof value === 'string') named[`outbox.${name}`] = value
  }
  for (const mode of ['off', 'always', 'waiting'] as const) {
    named[`outbox.insertOne.${mode}`] = outbox.insertOne(mode)
    named[`outbox.insertMany.${mode}`] = outbox.insertMany(mode)
    named[`outbox.insertKeyed.${mode}`] = outbox.insertKeyed(mode)
  }
  const claim = {
    workerId: 'w',
    now: new Date(0),
    leaseUntil: new Date(1),
    limit: 7,
    deadLettersBlockKeys: true,
  }
  named['outbox.claim'] = claimQuery(outbox.table, { ...claim, keyedLive: true })
  named['outbox.claim.walk'] = claimQuery(outbox.table, { ...claim, keyedLive: false })
  for (const [name, value] of Object.entries(inbox)) named[`inbox.${name}`] = value
  return named
}

const KEYED_INSERTS = ['outbox.insertKeyed.off', 'outbox.insertKeyed.always', 'outbox.insertKeyed.waiting']

const FENCED = ['outbox.markAsSent', 'outbox.markManyAsSent', 'outbox.markAsFailed', 'outbox.retryLater']

const POSTGRES_MUTANTS: readonly StatementMutant[] = [
  // The claim's two shapes (sql.ts claimQuery): outbox.claim.walk, the one walk of the
  // claimable index an outbox without keyed events live gets (and every store's first claim);
  // outbox.claim, the keyed shape, whose rule has a copy per source: u the unkeyed walk, w
  // the keyed window, t each keyed candidate's re-check. The conformance cases run small
  // tables, where a keyed candidate always comes from the window; the skip scan past it is
  // covered by test/keyed-claim.test.ts.
  {
    id: 'claim: due pending at exactly now not claimable (<= → <)',
    statements: ['outbox.claim.walk'],
    find: "(status = 'pending' AND available_at <=",
    replace: "(status = 'pending' AND available_at <",
    kills: ['outbox.order.frozen-clock', 'outbox.claim.lease-expiry-reclaim'],
  },
  {
    id: 'claim: lease expiring at exactly now not reclaimable (<= → <)',
    statements: ['outbox.claim.walk'],
    find: "(status = 'publishing' AND lease_until <=",
    replace: "(status = 'publishing' AND lease_until <",
    kills: ['outbox.claim.lease-expiry-reclaim', 'outbox.claim.fencing'],
  },
  {
    id: 'claim: lease-expiry branch dropped',
    statements: ['outbox.claim.walk'],
    find: " OR (status = 'publishing' AND lease_until <=",
    replace: ' OR (false AND lease_until <=',
    kills: ['outbox.claim.lease-expiry-reclaim', 'outbox.claim.fencing'],
  },
  {
    id: 'claim: ORDER BY seq reversed',
    statements: ['outbox.claim.walk'],
    find: 'ORDER BY seq\n',
    replace: 'ORDER BY seq DESC\n',
    kills: ['outbox.order.claim-order', 'outbox.order.frozen-clock'],
  },
  {
    id: 'claim: ORDER BY seq dropped',
    statements: ['outbox.claim.walk'],
    find: 'ORDER BY seq\n',
    replace: '\n',
    kills: [],
    survives: {
      reason:
        'not equivalent, but the plan the claim forces (no sort, no bitmap scan) walks the claimable index in seq order, so rows still come out in enqueue order; only a plan that scans the heap would show it',
      cases: ['outbox.order.not-physical', 'outbox.order.claim-order'],
    },
  },
  {
    id: 'claim: LIMIT ignored',
    statements: ['outbox.claim.walk'],
    find: 'ORDER BY seq\n        LIMIT ',
    replace: 'ORDER BY seq\n        LIMIT 10000 + ',
    kills: ['outbox.order.claim-order', 'outbox.order.frozen-clock'],
  },
  {
    id: 'claim: FOR UPDATE SKIP LOCKED removed',
    statements: ['outbox.claim.walk'],
    find: 'FOR UPDATE SKIP LOCKED\n      ))\n      RETURNING',
    replace: '\n      ))\n      RETURNING',
    kills: ['outbox.claim.disjoint-concurrent', 'outbox.claim.disjoint-across-connections'],
  },
  {
    id: 'claim: SKIP LOCKED dropped (plain FOR UPDATE)',
    statements: ['outbox.claim.walk'],
    find: 'FOR UPDATE SKIP LOCKED\n      ))\n      RETURNING',
    replace: 'FOR UPDATE\n      ))\n      RETURNING',
    kills: [],
    survives: {
      reason:
        'equivalent for the contract: a claimer waits for a concurrent one instead of skipping its rows (slower, never a double claim: the re-check after the wait drops rows claimed meanwhile)',
      cases: ['outbox.claim.disjoint-across-connections'],
    },
  },
  {
    id: 'keyed claim: a keyed event due at exactly now not claimable (<= → <)',
    statements: ['outbox.claim'],
    find: "(t.status = 'pending' AND t.available_at <=",
    replace: "(t.status = 'pending' AND t.available_at <",
    kills: [
      'outbox.ordering.heads-only',
      'outbox.ordering.dead-letter-policy',
      'outbox.ordering.skip-redrive-in-flight',
      'outbox.ordering.commit-order',
    ],
  },
  {
    id: 'keyed claim: an unkeyed event due at exactly now not claimable (<= → <)',
    statements: ['outbox.claim'],
    find: "(u.status = 'pending' AND u.available_at <=",
    replace: "(u.status = 'pending' AND u.available_at <",
    kills: ['outbox.ordering.heads-only'],
  },
  {
    id: 'keyed claim: ORDER BY of the unkeyed walk reversed',
    statements: ['outbox.claim'],
    find: 'ORDER BY u.seq\n',
    replace: 'ORDER BY u.seq DESC\n',
    kills: [],
    survives: {
      reason:
        'no conformance case has more unkeyed events due than its claim limit while a keyed event is live; test/keyed-claim.test.ts "with a keyed event live, unkeyed events go oldest first..." kills it',
      cases: ['outbox.order.claim-order', 'outbox.ordering.heads-only'],
    },
  },
  {
    id: 'keyed claim: ORDER BY of the keyed window reversed',
    statements: ['outbox.claim'],
    find: 'ORDER BY w.seq\n',
    replace: 'ORDER BY w.seq DESC\n',
    kills: [],
    survives: {
      reason:
        'heads-across-connections fails after its drain deadline (90 s, not run here); test/keyed-claim.test.ts "many shallow keys are served by the window" kills it',
      cases: ['outbox.ordering.heads-only', 'outbox.order.claim-order'],
    },
  },
  {
    id: 'keyed claim: LIMIT of the merge ignored',
    statements: ['outbox.claim'],
    find: 'ORDER BY c.seq\n        LIMIT ',
    replace: 'ORDER BY c.seq\n        LIMIT 10000 + ',
    kills: [],
    survives: {
      reason:
        'no conformance case has more keyed and unkeyed events due together than its claim limit (each source alone stops at the limit); test/keyed-claim.test.ts "keyed heads past the window come out in enqueue order..." kills it',
      cases: ['outbox.order.claim-order', 'outbox.ordering.heads-only'],
    },
  },
  {
    id: 'keyed claim: unkeyed walk not locked',
    statements: ['outbox.claim'],
    find: 'FOR UPDATE SKIP LOCKED\n      ), near AS',
    replace: '\n      ), near AS',
    kills: [],
    survives: {
      reason:
        'the conformance cases race claimers over unkeyed events only while no keyed event is live (the walk shape); test/keyed-claim.test.ts "with a keyed event live, unkeyed events go oldest first..., skipping one another claimer holds" blocks on the held row',
      cases: ['outbox.ordering.heads-only', 'outbox.ordering.dead-letter-policy'],
    },
  },
  {
    id: 'keyed claim: keyed candidates not locked',
    statements: ['outbox.claim'],
    find: 'FOR UPDATE SKIP LOCKED\n        ) locked',
    replace: '\n        ) locked',
    kills: [],
    survives: {
      reason:
        'heads-across-connections catches it only when two claims overlap on a key; test/keyed-claim.test.ts "a claimer finds heads past the window when another claimer holds..." blocks on the held heads',
      cases: ['outbox.ordering.heads-only', 'outbox.claim.disjoint-concurrent'],
    },
  },
  {
    id: 'claim: head-of-key rule dropped',
    statements: ['outbox.claim', 'outbox.claim.walk'],
    find: "(t.ordering_key IS NULL OR (t.status = 'publishing' OR (",
    replace: "(true OR (t.status = 'publishing' OR (",
    // heads-across-connections catches it only when two claims happen to overlap on a key.
    kills: ['outbox.ordering.heads-only'],
  },
  {
    id: 'claim: an expired publishing event waits for a lower redriven dead letter',
    statements: ['outbox.claim', 'outbox.claim.walk'],
    find: "(t.ordering_key IS NULL OR (t.status = 'publishing' OR (",
    replace: '(t.ordering_key IS NULL OR (false OR (',
    // The redriven dead letter waits for the expired event and the expired event for it.
    kills: ['outbox.ordering.skip-redrive-in-flight'],
  },
  {
    id: "claim: a later publishing event does not hold a redriven dead letter's key",
    statements: ['outbox.claim', 'outbox.claim.walk'],
    find: 'AND (t.error_message IS NULL OR NOT EXISTS (',
    replace: 'AND (true OR NOT EXISTS (',
    kills: ['outbox.ordering.skip-redrive-in-flight'],
  },
  {
    id: 'claim: head probe <= (a keyed event holds its own key)',
    statements: ['outbox.claim', 'outbox.claim.walk'],
    find: 'h.key_seq < t.key_seq',
    replace: 'h.key_seq <= t.key_seq',
    // heads-across-connections fails too, after its drain deadline (90 s): not run here.
    kills: ['outbox.ordering.heads-only'],
  },
  {
    id: 'claim: a publishing event does not hold its key',
    statements: ['outbox.claim', 'outbox.claim.walk'],
    find: "h.status IN ('pending', 'publishing', 'failed')",
    replace: "h.status IN ('pending', 'failed')",
    // heads-across-connections catches it only when two claims happen to overlap on a key.
    kills: ['outbox.ordering.heads-only'],
  },
  {
    id: "claim: dead letters never hold their key ('block' read as 'skip')",
    statements: ['outbox.claim', 'outbox.claim.walk'],
    find: "h.status IN ('pending', 'publishing', 'failed')",
    replace: "h.status IN ('pending', 'publishing')",
    kills: ['outbox.ordering.dead-letter-policy'],
  },
  {
    id: 'insertKeyed: the counter overwritten instead of advanced',
    statements: KEYED_INSERTS,
    find: 'SET last_seq = k.last_seq + EXCLUDED.last_seq',
    replace: 'SET last_seq = EXCLUDED.last_seq',
    kills: ['outbox.ordering.key-seq'],
  },
  {
    id: 'insertKeyed: a batch numbered against its input order',
    statements: KEYED_INSERTS,
    find: 'ORDER BY i.ord)',
    replace: 'ORDER BY i.ord DESC)',
    kills: ['outbox.ordering.key-seq'],
  },
  {
    id: 'fence: claimed_by = $2 dropped',
    statements: FENCED,
    find: ' AND claimed_by = $2::text))',
    replace: '))',
    kills: ['outbox.claim.fencing', 'outbox.claim.fenced-after-release'],
  },
  {
    id: "fence: status = 'publishing' dropped",
    statements: FENCED,
    find: "(status = 'publishing' AND claimed_by = $2::text)",
    replace: '(claimed_by = $2::text)',
    kills: [],
    survives: {
      reason:
        "equivalent: every statement that moves an event out of 'publishing' clears claimed_by, so claimed_by = $2 already implies status = 'publishing'",
      cases: ['outbox.claim.fencing', 'outbox.claim.fenced-after-release'],
    },
  },
  {
    id: 'renewLease: claimed_by = $2 dropped',
    statements: ['outbox.renewLease'],
    find: ' AND claimed_by = $2\n',
    replace: '\n',
    kills: ['outbox.claim.renew-lease', 'outbox.claim.fenced-after-release'],
  },
  {
    id: 'markAsSent: lease left on the sent event',
    statements: ['outbox.markAsSent'],
    find: 'sent_at = $3, claimed_by = NULL, lease_until = NULL\n      WHERE event_id = $1 AND',
    replace: 'sent_at = $3\n      WHERE event_id = $1 AND',
    kills: ['outbox.claim.fenced-after-release', 'outbox.fields.absent-undefined'],
  },
  {
    id: 'resetStale: exact cutoff reset (< → <=)',
    statements: ['outbox.resetStale'],
    find: 'claimed_at < $1',
    replace: 'claimed_at <= $1',
    kills: ['outbox.reset-stale.exact-cutoff'],
  },
  {
    id: 'resetStale: enqueued_at instead of claimed_at',
    statements: ['outbox.resetStale'],
    find: 'claimed_at < $1',
    replace: 'enqueued_at < $1',
    kills: ['outbox.reset-stale.claim-time-not-enqueue-time', 'outbox.reset-stale.live-claims-untouched'],
  },
  {
    id: "resetStale: status = 'publishing' dropped",
    statements: ['outbox.resetStale'],
    find: "WHERE status = 'publishing' AND claimed_at < $1",
    replace: 'WHERE claimed_at < $1',
    kills: ['outbox.reset-stale.exact-cutoff', 'outbox.claim.fenced-after-release'],
  },
  {
    id: "cleanup: status = 'sent' dropped",
    statements: ['outbox.cleanupBatch'],
    find: "WHERE status = 'sent' AND sent_at < $1",
    replace: 'WHERE sent_at < $1',
    kills: ['outbox.cleanup.status-not-sent-at'],
  },
  {
    id: 'cleanup: exact cutoff deleted (< → <=)',
    statements: ['outbox.cleanupBatch'],
    find: 'sent_at < $1\n',
    replace: 'sent_at <= $1\n',
    kills: ['outbox.cleanup.exact-cutoff', 'outbox.cleanup.sent-only'],
  },
  {
    id: 'cleanup: one short batch taken for the last (LIMIT 1000 → 100)',
    statements: ['outbox.cleanupBatch'],
    // The kernel asks for batches of 1,000 (POSTGRES_SWEEP_BATCH) through $2.
    find: 'sent_at < $1\n        LIMIT $2',
    replace: 'sent_at < $1\n        LIMIT $2::int / 10',
    kills: ['outbox.cleanup.batches'],
  },
  {
    id: 'inbox resetStale: received_at instead of the claim time',
    statements: ['inbox.resetStale'],
    find: 'COALESCE(claimed_at, received_at) < $1',
    replace: 'received_at < $1',
    kills: ['inbox.reset-stale.claim-time'],
  },
  {
    id: 'inbox cleanup: exact cutoff deleted (< → <=)',
    statements: ['inbox.cleanupBatch'],
    find: 'processed_at < $1',
    replace: 'processed_at <= $1',
    kills: ['inbox.cleanup.exact-cutoff'],
  },
  {
    id: 'inbox resetStale: exact cutoff reset (< → <=)',
    statements: ['inbox.resetStale'],
    find: 'received_at) < $1',
    replace: 'received_at) <= $1',
    kills: ['inbox.reset-stale.exact-cutoff'],
  },
  {
    id: "inbox cleanup: status = 'processed' dropped",
    statements: ['inbox.cleanupBatch'],
    find: "WHERE status = 'processed' AND processed_at < $1",
    replace: 'WHERE processed_at < $1',
    kills: [],
    survives: {
      reason:
        "equivalent: only a processed row has processed_at (processed is final: markAsFailed never moves it, §3), so processed_at < $1 already implies status = 'processed'",
      cases: ['inbox.cleanup.failed-kept', 'inbox.cleanup.processed-only'],
    },
  },
]

describe.skipIf(noServer)(
  `PostgreSQL SQL mutants fail their cases${noServer ? ` (${skipReason})` : ''}`,
  () => {
    const all = statements()
    const server = { engine: 'postgres', url: url ?? '', source: 'env' } as const
    for (const mutant of POSTGRES_MUTANTS) {
      it(mutant.id, async () => {
        checkMutant(mutant, all)
        const run = await runMutant(
          mutant,
          (rewrite) => createConformanceTarget({ rewriteStatement: rewrite }),
          { server },
        )
        expect(run.hits, 'the mutated statement never ran').toBeGreaterThan(0)
        if (mutant.kills.length > 0) expect(run.failed).toEqual(mutant.kills)
        else expect(run.passed).toEqual(mutant.survives?.cases)
      })
    }
  },
)
