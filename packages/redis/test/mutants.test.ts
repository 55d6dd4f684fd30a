import { checkMutant, runMutant, type StatementMutant } from '@txbox/conformance'
import { describe, expect, it } from 'vitest'
import { createConformanceTarget } from '../src/conformance-target.js'
import { scripts } from '../src/scripts.js'
import { REDIS_URL, SKIP, SKIP_REASON } from './helpers.js'

/**
 * Hand-written mutants of the Lua StrykerJS cannot edit (to it a script is one string): each
 * one is a mistake a real author could make in the claim, the fence, cleanup or resetStale,
 * and names the conformance cases that must fail on a store running it. A mutant of the
 * outbox prelude (the fence, clear_lease) is in every outbox script, as the real mistake
 * would be. Documented in docs/CONFORMANCE.md ("Hand-written SQL and Lua mutants").
 */

/** Every script of the adapter, by its name in `scripts`. */
const statements = (): Record<string, string> =>
  Object.fromEntries(Object.entries(scripts).map(([name, script]) => [name, script.lua]))

/** The one-event enqueue: the outbox keys, dead_below and write_new only (its text goes in every `{ tx }` MULTI). */
const ONE_EVENT_ENQUEUE = 'outboxFindOrCreateOne'

/** Every other outbox script: each includes OUTBOX_BASE (the counts, call_batched). */
const OUTBOX_SCRIPTS = Object.keys(scripts).filter(
  (name) => name.startsWith('outbox') && name !== ONE_EVENT_ENQUEUE,
)

/** Every script that includes the whole outbox prelude (the fence, clear_lease): all but the enqueues. */
const OUTBOX_PRELUDE_SCRIPTS = OUTBOX_SCRIPTS.filter((name) => name !== 'outboxFindOrCreate')

const REDIS_MUTANTS: readonly StatementMutant[] = [
  {
    id: 'claim: a delayed event due at exactly now not promoted (ZRANGEBYSCORE bound exclusive)',
    statements: ['outboxClaim'],
    find: "DELAYED, '-inf', now, 'LIMIT', 0, cap)\nfor _, id in ipairs(due) do\n  local f = redis.call('HMGET'",
    replace:
      "DELAYED, '-inf', '(' .. now, 'LIMIT', 0, cap)\nfor _, id in ipairs(due) do\n  local f = redis.call('HMGET'",
    kills: ['outbox.retry.backoff-honoured', 'outbox.order.claim-order'],
  },
  {
    id: 'claim: lease expiring at exactly now not reclaimable (ZRANGEBYSCORE bound exclusive)',
    statements: ['outboxClaim'],
    find: "LEASES, '-inf', now,",
    replace: "LEASES, '-inf', '(' .. now,",
    kills: ['outbox.claim.lease-expiry-reclaim'],
  },
  {
    id: 'claim: expired leases never read',
    statements: ['outboxClaim'],
    find: "local expired = redis.call('ZRANGEBYSCORE', LEASES, '-inf', now, 'LIMIT', 0, cap)",
    replace: 'local expired = {}',
    kills: ['outbox.claim.lease-expiry-reclaim', 'outbox.claim.fencing'],
  },
  {
    id: 'requeueFailed: a publishing head not pinned before a redriven dead letter enters below it',
    statements: ['outboxRequeueFailed'],
    find: 'if f[2] then pin_publishing_head(f[2]) end',
    replace: '',
    kills: ['outbox.ordering.skip-redrive-in-flight'],
  },
  {
    id: 'claim: candidates sorted newest first',
    statements: ['outboxClaim'],
    find: 'return a[2] < b[2] end)\n  local pending = {}',
    replace: 'return a[2] > b[2] end)\n  local pending = {}',
    // Only the merge (expired leases or BLOCKED heads beside READY) sorts: the usual claim
    // pops READY, already in seq order, so the plain claim-order cases no longer see it.
    kills: [
      'outbox.claim.limit-counts-expired',
      'outbox.claim.renew-lease',
      'outbox.claim.fenced-after-release',
    ],
  },
  {
    id: 'claim: limit ignored when expired leases add candidates',
    statements: ['outboxClaim'],
    find: 'for i = 1, math.min(limit, #candidates) do\n    claimed[i]',
    replace: 'for i = 1, #candidates do\n    claimed[i]',
    kills: ['outbox.claim.limit-counts-expired', 'outbox.claim.fenced-after-release'],
  },
  {
    id: 'claim: claimed events left in READY (the usual claim reads READY instead of popping it)',
    statements: ['outboxClaim'],
    find: "redis.call('ZPOPMIN', READY, limit)",
    replace: "redis.call('ZRANGE', READY, 0, limit - 1, 'WITHSCORES')",
    // Of the 24 cases that fail, the ones that fail fast: the others page until the outbox
    // is empty, which with the events never leaving READY takes until the test timeout.
    kills: ['outbox.order.claim-order', 'outbox.find-pending.pending-only', 'outbox.fields.as-stored'],
  },
  {
    id: 'claim: claimed events left in READY (the merge with expired leases)',
    statements: ['outboxClaim'],
    find: "call_batched('ZREM', READY, pending)",
    replace: "call_batched('ZREM', READY, {})",
    kills: ['outbox.claim.limit-counts-expired'],
  },
  {
    id: 'claim: the usual claim (READY alone) taken while a lease has expired',
    statements: ['outboxClaim'],
    find: 'if #expired == 0 and #blocked == 0 then',
    replace: 'if #blocked == 0 then',
    // Ten cases fail; these four cover reclaim, the fence and a keyed head in flight.
    kills: [
      'outbox.claim.lease-expiry-reclaim',
      'outbox.claim.fencing',
      'outbox.retry.dead-letter',
      'outbox.ordering.skip-redrive-in-flight',
    ],
  },
  {
    id: "claim: the usual claim (READY alone) taken while BLOCKED has heads ('skip' misses them)",
    statements: ['outboxClaim'],
    find: 'if #expired == 0 and #blocked == 0 then',
    replace: 'if #expired == 0 then',
    kills: ['outbox.ordering.dead-letter-policy', 'outbox.ordering.skip-redrive-in-flight'],
  },
  {
    id: "claim: a 'skip' claim leaves the BLOCKED heads it took in BLOCKED",
    statements: ['outboxClaim'],
    find: "if not block then call_batched('ZREM', BLOCKED, pending) end",
    replace: '',
    kills: ['outbox.ordering.dead-letter-policy', 'outbox.ordering.skip-redrive-in-flight'],
  },
  {
    id: 'claim: LEASES not written, so an expired lease is never found',
    statements: ['outboxClaim'],
    find: "call_batched('ZADD', LEASES, leases)",
    replace: "call_batched('ZADD', LEASES, {})",
    kills: [
      'outbox.claim.lease-expiry-reclaim',
      'outbox.claim.limit-counts-expired',
      'outbox.claim.fencing',
      'outbox.retry.dead-letter',
      'outbox.reset-stale.live-claims-untouched',
      'outbox.claim.fenced-after-release',
      'outbox.fields.as-stored',
    ],
  },
  {
    id: 'claim: counts not moved from pending to publishing',
    statements: ['outboxClaim'],
    find: "  bump('pending', -taken)\n  bump('publishing', taken)",
    replace: "  bump('pending', 0)\n  bump('publishing', 0)",
    kills: [
      'outbox.counts.all-statuses',
      'outbox.validation.unknown-ids-create-nothing',
      'outbox.paging.many-pages',
    ],
  },
  {
    id: 'call_batched: only the first slice of a batch',
    statements: OUTBOX_SCRIPTS,
    find: 'for i = 1, #args, 1000 do',
    replace: 'for i = 1, math.min(#args, 1), 1000 do',
    kills: ['outbox.paging.many-pages'],
  },
  {
    id: 'markManyAsSent: claimedBy and leaseUntil left on the sent events',
    statements: ['outboxMarkManySent'],
    find: "from[#from + 1] = id\n    redis.call('HDEL', key, 'claimedBy', 'leaseUntil')",
    replace: 'from[#from + 1] = id',
    kills: ['outbox.claim.fencing'],
  },
  {
    id: 'markManyAsSent: leases left in the LEASES index',
    statements: ['outboxMarkManySent'],
    find: "call_batched('ZREM', LEASES, applied)",
    replace: "call_batched('ZREM', LEASES, {})",
    // The next claim after the lease ends takes the sent events again.
    kills: ['outbox.claim.sent-batch-stays-sent'],
  },
  {
    id: 'markManyAsSent: sent events left in PUBLISHING (resetStale would take them back)',
    statements: ['outboxMarkManySent'],
    find: "call_batched('ZREM', PUBLISHING, left.publishing)",
    replace: "call_batched('ZREM', PUBLISHING, {})",
    kills: ['outbox.claim.sent-batch-stays-sent'],
  },
  {
    id: 'markManyAsSent: counts not moved',
    statements: ['outboxMarkManySent'],
    find: 'if delta ~= 0 then bump(status, delta) end',
    replace: 'if false then bump(status, delta) end',
    kills: ['outbox.cleanup.batches'],
  },
  {
    id: 'fence: claimedBy not compared',
    statements: OUTBOX_PRELUDE_SCRIPTS,
    find: "(f[1] ~= 'publishing' or f[2] ~= worker)",
    replace: "(f[1] ~= 'publishing')",
    kills: ['outbox.claim.fencing', 'outbox.claim.fenced-after-release'],
  },
  {
    id: "fence: status 'publishing' not checked",
    statements: OUTBOX_PRELUDE_SCRIPTS,
    find: "(f[1] ~= 'publishing' or f[2] ~= worker)",
    replace: '(f[2] ~= worker)',
    kills: [],
    survives: {
      reason:
        "equivalent: every script that moves an event out of 'publishing' clears claimedBy (clear_lease), so claimedBy = worker already implies 'publishing'",
      cases: ['outbox.claim.fencing', 'outbox.claim.fenced-after-release'],
    },
  },
  {
    id: 'clear_lease: HDEL of claimedBy/leaseUntil missing',
    statements: OUTBOX_PRELUDE_SCRIPTS,
    find: "redis.call('HDEL', key, 'claimedBy', 'leaseUntil')\n  redis.call('ZREM', LEASES, id)",
    replace: "redis.call('ZREM', LEASES, id)",
    kills: ['outbox.claim.fenced-after-release', 'outbox.fields.absent-undefined'],
  },
  {
    id: 'clear_lease: lease left in the LEASES index',
    statements: OUTBOX_PRELUDE_SCRIPTS,
    find: "redis.call('HDEL', key, 'claimedBy', 'leaseUntil')\n  redis.call('ZREM', LEASES, id)",
    replace: "redis.call('HDEL', key, 'claimedBy', 'leaseUntil')",
    kills: ['outbox.retry.dead-letter', 'outbox.fields.as-stored'],
  },
  {
    id: 'renewLease: claimedBy not compared',
    statements: ['outboxRenewLease'],
    find: "if f[1] == 'publishing' and f[2] == worker then",
    replace: "if f[1] == 'publishing' then",
    kills: ['outbox.claim.renew-lease'],
  },
  {
    id: 'renewLease: LEASES index not moved (hash only)',
    statements: ['outboxRenewLease'],
    find: "\n    redis.call('ZADD', LEASES, lease_until, id)\n",
    replace: '\n',
    kills: ['outbox.claim.renew-lease'],
  },
  {
    id: 'resetStale: exact cutoff reset (exclusive bound dropped)',
    statements: ['outboxResetStale'],
    find: "PUBLISHING, '-inf', '(' .. ARGV[1],",
    replace: "PUBLISHING, '-inf', ARGV[1],",
    kills: ['outbox.reset-stale.exact-cutoff'],
  },
  {
    id: 'resetStale: lease kept on the reset event',
    statements: ['outboxResetStale'],
    find: "  clear_lease(key, id)\n  redis.call('HSET', key, 'status', 'pending')",
    replace: "  redis.call('HSET', key, 'status', 'pending')",
    kills: ['outbox.claim.fenced-after-release', 'outbox.reset-stale.live-claims-untouched'],
  },
  {
    id: 'cleanup: exact cutoff deleted (exclusive bound dropped)',
    statements: ['outboxCleanup'],
    find: "SENT, '-inf', '(' .. ARGV[1],",
    replace: "SENT, '-inf', ARGV[1],",
    kills: ['outbox.cleanup.exact-cutoff'],
  },
  {
    id: 'cleanup: one event short of the batch, so the loop stops early',
    statements: ['outboxCleanup'],
    find: "SENT, '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))",
    replace: "SENT, '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]) - 1)",
    kills: ['outbox.cleanup.batches'],
  },
  {
    id: 'cleanup: event hash left behind (index entry only)',
    statements: ['outboxCleanup'],
    find: "  redis.call('DEL', EVENT .. id)\n  leave(id, 'sent')",
    replace: "  leave(id, 'sent')",
    kills: ['outbox.cleanup.sent-only'],
  },
  {
    id: 'inbox resetStale: exact cutoff reset (exclusive bound dropped)',
    statements: ['inboxResetStale'],
    find: "PROCESSING, '-inf', '(' .. ARGV[1],",
    replace: "PROCESSING, '-inf', ARGV[1],",
    kills: ['inbox.reset-stale.exact-cutoff'],
  },
  {
    id: 'inbox cleanup: exact cutoff deleted (exclusive bound dropped)',
    statements: ['inboxCleanup'],
    find: "PROCESSED, '-inf', '(' .. ARGV[1],",
    replace: "PROCESSED, '-inf', ARGV[1],",
    kills: ['inbox.cleanup.exact-cutoff'],
  },
  {
    id: 'inbox claim: lease expiring at exactly now not taken over (> → >=)',
    statements: ['inboxClaim'],
    find: 'tonumber(lease) > tonumber(now)',
    replace: 'tonumber(lease) >= tonumber(now)',
    kills: ['inbox.claim.expired-lease'],
  },
  {
    id: "claim: a dead letter never holds its key ('block' read as 'skip')",
    statements: ['outboxClaim'],
    find: "local block = ARGV[6] == '1'",
    replace: 'local block = false',
    kills: ['outbox.ordering.heads-only', 'outbox.ordering.dead-letter-policy'],
  },
  {
    id: 'enqueue: every new keyed event filed as its key head (nothing parked)',
    statements: ['outboxFindOrCreate', ONE_EVENT_ENQUEUE],
    find: 'if not head then return key_seq, PARKED, seq, id end',
    replace: 'if false then return key_seq, PARKED, seq, id end',
    kills: ['outbox.ordering.heads-only', 'outbox.ordering.heads-across-connections'],
  },
  {
    id: 'markManyAsSent: the next event of a sent head left parked (its key stalls)',
    statements: ['outboxMarkManySent'],
    find: '      else\n        ready[#ready + 1] = f[3]\n        ready[#ready + 1] = next_id\n      end',
    replace: '      end',
    kills: [
      'outbox.ordering.dead-letter-policy',
      'outbox.ordering.heads-across-connections',
      'outbox.ordering.heads-only',
    ],
  },
]

describe.skipIf(SKIP)(`Redis Lua mutants fail their cases${SKIP ? ` (${SKIP_REASON})` : ''}`, () => {
  const all = statements()
  const server = { engine: 'redis', url: REDIS_URL ?? '', source: 'env' } as const
  for (const mutant of REDIS_MUTANTS) {
    it(mutant.id, async () => {
      checkMutant(mutant, all)
      const run = await runMutant(mutant, (rewrite) => createConformanceTarget({ rewriteScript: rewrite }), {
        server,
      })
      expect(run.hits, 'the mutated script never ran').toBeGreaterThan(0)
      if (mutant.kills.length > 0) expect(run.failed).toEqual(mutant.kills)
      else expect(run.passed).toEqual(mutant.survives?.cases)
    })
  }
})
