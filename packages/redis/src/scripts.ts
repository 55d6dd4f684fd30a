import { LuaScript } from './client.js'

/**
 * Every state change of the store is ONE of these Lua scripts. Redis runs a script
 * atomically (no other command interleaves), so a script that reads an event, checks it and
 * writes it cannot race with another client: that is the whole concurrency story of this
 * adapter, the Redis counterpart of `FOR UPDATE SKIP LOCKED`.
 *
 * Conventions:
 * - Timestamps arrive as ARGV (epoch milliseconds from the injected clock), never from
 *   Redis `TIME`, so tests drive time and every writer agrees on what "now" was.
 * - KEYS[1] is the prefix of the per-event hashes (`txbox:{p}:outbox:e:`). It is not a key
 *   but is passed as one so that an ioredis `keyPrefix` option is applied to it like to the
 *   real keys. Scripts that touch events they learn about only while running (claim,
 *   cleanup, resetStale, version 1's inbox alias) build those keys from it, and so does
 *   markManyAsSent, the relay's other hot script, to send each id once rather than with its key:
 *   that is allowed on a Cluster only because every key of a store shares the `{p}` hash tag,
 *   i.e. one slot.
 * - Each status has exactly one index (see keys.ts), and the `counts` hash is adjusted by
 *   the same script as the status, so counts never need KEYS or SCAN.
 */

// ---------------------------------------------------------------------------------------
// Outbox
// ---------------------------------------------------------------------------------------

/**
 * The outbox keys by role (KEYS[1..14], in the order of `indexKeys`); a per-event script's
 * event keys start at FIRST_EVENT. No Lua comments here: with `{ tx }` the enqueue scripts'
 * whole text is sent as EVAL in every caller's MULTI.
 */
const OUTBOX_KEYS = `
local EVENT, READY, DELAYED, LEASES, PUBLISHING, SENT, FAILED, COUNTS, SEQ =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local KEYSEQ, LIVE, DEAD, BLOCKED, PARKED = KEYS[10], KEYS[11], KEYS[12], KEYS[13], KEYS[14]
local FIRST_EVENT = 15
`

/** Whether the key `okey` has a dead letter below `key_seq` (it holds the key for a 'block' claim). */
const DEAD_BELOW = `
local function dead_below(okey, key_seq)
  return #redis.call('ZRANGEBYSCORE', DEAD .. okey, '-inf', '(' .. key_seq, 'LIMIT', 0, 1) > 0
end
`

/**
 * The part of the prelude every outbox script but the one-event enqueue needs: the keys, the
 * counts, the dead-letter look-up and the batched index writes. The batch enqueue has only
 * this, since with `{ tx }` its whole text is sent as EVAL in every caller's MULTI.
 */
const OUTBOX_BASE = `${OUTBOX_KEYS}${DEAD_BELOW}

-- A field at zero is removed, so an empty store leaves no counts hash behind.
local function bump(status, delta)
  if redis.call('HINCRBY', COUNTS, status, delta) == 0 then redis.call('HDEL', COUNTS, status) end
end

-- One ZREM or ZADD for a whole batch instead of one per event, in slices of 1,000 values
-- (Lua's unpack takes at most ~8,000; an even slice never splits a score-member pair).
local function call_batched(command, key, args)
  for i = 1, #args, 1000 do redis.call(command, key, unpack(args, i, math.min(i + 999, #args))) end
end
`

const OUTBOX_PRELUDE = `${OUTBOX_BASE}
-- Ordering keys. LIVE .. key holds the key's pending and publishing events by keySeq, its
-- lowest the head; DEAD .. key its failed ones. A dead letter below key_seq holds the key for
-- a claim with keyedDeadLetters 'block'. A publishing event is always the lowest of LIVE: a
-- claim takes only the lowest, and where a pending event could come in below one (a redrive
-- of a dead letter a 'skip' claim went past, markAsPublishing of a later event) the
-- publishing one is scored keySeq - 2^53 instead (pinned: below every keySeq, and pinned
-- events among themselves still by keySeq), so a key with an event in flight has no other
-- head, and when several are publishing the lowest is the head, the one an expired lease
-- gives back first (CONTRACT §2).
local function pinned(key_seq) return tonumber(key_seq) - 9007199254740992 end

-- Takes the event out of the one index of its current status, and a keyed event out of its
-- key's sets (the caller then files it again and settles the key).
local function leave(id, status, okey)
  if status == 'pending' then
    redis.call('ZREM', READY, id)
    redis.call('ZREM', DELAYED, id)
    if okey then
      redis.call('ZREM', BLOCKED, id)
      redis.call('ZREM', PARKED, id)
    end
  elseif status == 'publishing' then
    redis.call('ZREM', PUBLISHING, id)
  elseif status == 'sent' then
    redis.call('ZREM', SENT, id)
  elseif status == 'failed' then
    redis.call('ZREM', FAILED, id)
  end
  if okey then
    if status == 'failed' then
      redis.call('ZREM', DEAD .. okey, id)
    elseif status ~= 'sent' then
      redis.call('ZREM', LIVE .. okey, id)
    end
  end
  bump(status, -1)
end

-- Pins the key's head if it is publishing (see the LIVE comment in the base), before a
-- pending event with a lower keySeq enters LIVE: that event is then parked behind it. The pin,
-- the entry and the parking are one script, so no claim runs between them and sees the
-- redriven event as the head beside the one in flight.
local function pin_publishing_head(okey)
  local head = redis.call('ZRANGE', LIVE .. okey, 0, 0, 'WITHSCORES')
  if head[1] and tonumber(head[2]) > 0 and redis.call('HGET', EVENT .. head[1], 'status') == 'publishing' then
    redis.call('ZADD', LIVE .. okey, pinned(head[2]), head[1])
  end
end

local function clear_lease(key, id)
  redis.call('HDEL', key, 'claimedBy', 'leaseUntil')
  redis.call('ZREM', LEASES, id)
end

-- Files a pending keyed event under the one index its place in its key calls for: the head
-- in DELAYED when not due, in BLOCKED when a dead letter is below it, else in READY; any
-- other event of the key in PARKED, where no claim looks.
local function file_keyed(key, id, now)
  local f = redis.call('HMGET', key, 'availableAt', 'seq', 'orderingKey', 'keySeq')
  -- A pending event is in one index only: a parked one (the usual new head) in no other.
  if redis.call('ZREM', PARKED, id) == 0 then
    redis.call('ZREM', READY, id)
    redis.call('ZREM', DELAYED, id)
    redis.call('ZREM', BLOCKED, id)
  end
  if redis.call('ZRANGE', LIVE .. f[3], 0, 0)[1] ~= id then
    redis.call('ZADD', PARKED, f[2], id)
  elseif tonumber(f[1]) > tonumber(now) then
    redis.call('ZADD', DELAYED, f[1], id)
  elseif dead_below(f[3], f[4]) then
    redis.call('ZADD', BLOCKED, f[2], id)
  else
    redis.call('ZADD', READY, f[2], id)
  end
end

-- After a change to a key's events, files its lowest live events again if pending: the head
-- (1), and with 2 the one after it too, when the change may have put an event below the head
-- (a redrive, a retry, a reset: the old head must be parked). The others keep their place.
local function settle(okey, now, count)
  for _, id in ipairs(redis.call('ZRANGE', LIVE .. okey, 0, count - 1)) do
    local key = EVENT .. id
    if redis.call('HGET', key, 'status') == 'pending' then file_keyed(key, id, now) end
  end
end

-- A due pending event waits in READY ordered by seq (claim order); one that is not due yet
-- waits in DELAYED ordered by availableAt until a claim promotes it. A keyed one joins its
-- key's live events and is filed by its place in the key.
local function enter_pending(key, id, now)
  local f = redis.call('HMGET', key, 'availableAt', 'seq', 'orderingKey', 'keySeq')
  if f[3] then
    redis.call('ZADD', LIVE .. f[3], f[4], id)
    file_keyed(key, id, now)
    settle(f[3], now, 2)
  elseif tonumber(f[1]) <= tonumber(now) then
    redis.call('ZADD', READY, f[2], id)
  else
    redis.call('ZADD', DELAYED, f[1], id)
  end
  bump('pending', 1)
end

-- The fence: returns the status, 1 and the ordering key (false when none), or nil and 0
-- (not stored) / -1 (lease lost). worker '' means the caller did not fence (a workerId is
-- never empty).
local function fenced_status(key, worker)
  local f = redis.call('HMGET', key, 'status', 'claimedBy', 'orderingKey')
  if not f[1] then return nil, 0 end
  if worker ~= '' and (f[1] ~= 'publishing' or f[2] ~= worker) then return nil, -1 end
  return f[1], 1, f[3]
end

local function mark_sent(key, id, status, okey, now)
  leave(id, status, okey)
  clear_lease(key, id)
  redis.call('HSET', key, 'status', 'sent', 'sentAt', now)
  redis.call('ZADD', SENT, now, id)
  bump('sent', 1)
  if okey then settle(okey, now, 1) end
end
`

/**
 * `write_new(key, a, seq, now)`: writes the new event whose 7 ARGV start at `a` (id, subject,
 * payload, hasHeaders, headers, availableAt, orderingKey or '') under `key` with enqueue
 * sequence `seq`, and answers what the caller returns for it (its seq, or its keySeq when
 * keyed) and the index it belongs in, with its score and member: the caller files it (the
 * batch with one ZADD per index). A due unkeyed event goes to READY, a not-due one to
 * DELAYED. A keyed one takes its keySeq from HINCRBY of its key's counter, which nothing
 * deletes, so keySeqs follow the order in which the writes executed (EXEC for a MULTI); it
 * has its key's highest keySeq, so it is its key's head only when the key has no live event,
 * and no other event of the key moves: a head goes where an unkeyed event would, or to
 * BLOCKED when a dead letter of its key is below it (a key has one only while FAILED is not
 * empty: one ZCARD per script spares the per-key look-up in the usual case); any other to
 * PARKED. No Lua comments: see OUTBOX_KEYS.
 */
const OUTBOX_WRITE_NEW = `
local any_failed
local function write_new(key, a, seq, now)
  local id, available_at, okey = ARGV[a], ARGV[a + 5], ARGV[a + 6]
  local fields = {'eventId', id, 'subject', ARGV[a + 1], 'payload', ARGV[a + 2], 'status', 'pending',
    'enqueuedAt', now, 'availableAt', available_at, 'retryCount', 0, 'seq', seq}
  if ARGV[a + 3] == '1' then
    fields[#fields + 1] = 'headers'
    fields[#fields + 1] = ARGV[a + 4]
  end
  local due = tonumber(available_at) <= tonumber(now)
  if okey == '' then
    redis.call('HSET', key, unpack(fields))
    if due then return seq, READY, seq, id end
    return seq, DELAYED, available_at, id
  end
  local key_seq = redis.call('HINCRBY', KEYSEQ, okey, 1)
  fields[#fields + 1] = 'orderingKey'
  fields[#fields + 1] = okey
  fields[#fields + 1] = 'keySeq'
  fields[#fields + 1] = key_seq
  redis.call('HSET', key, unpack(fields))
  local live = LIVE .. okey
  local head = redis.call('ZCARD', live) == 0
  redis.call('ZADD', live, key_seq, id)
  if not head then return key_seq, PARKED, seq, id end
  if not due then return key_seq, DELAYED, available_at, id end
  if any_failed == nil then any_failed = redis.call('ZCARD', FAILED) > 0 end
  if any_failed and dead_below(okey, key_seq) then return key_seq, BLOCKED, seq, id end
  return key_seq, READY, seq, id
end
`

/**
 * KEYS: prelude, one event key per event. ARGV: now, then 7 per event (see OUTBOX_WRITE_NEW);
 * the ids are distinct. One script for the whole batch: all or nothing, one round trip,
 * consecutive seqs, and consecutive keySeqs per key in input order. Answers, per event, its
 * seq (its keySeq when keyed) when new or the stored hash.
 *
 * First write wins: a stored event is answered as it is (HGETALL), and only the others are
 * written. One INCRBY for the batch: the script runs alone, so its seqs are consecutive in
 * input order and follow every earlier script's, which keeps enqueue order the order in which
 * scripts ran (ties on enqueuedAt included).
 */
export const OUTBOX_FIND_OR_CREATE = `${OUTBOX_BASE}${OUTBOX_WRITE_NEW}
local now, out, fresh = ARGV[1], {}, {}
for i = FIRST_EVENT, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    out[#out + 1] = redis.call('HGETALL', KEYS[i])
  else
    out[#out + 1] = false
    fresh[#fresh + 1] = i
  end
end
if #fresh == 0 then return out end
local seq = redis.call('INCRBY', SEQ, #fresh) - #fresh
local filed = {}
for _, i in ipairs(fresh) do
  seq = seq + 1
  local answer, index, score, id = write_new(KEYS[i], 2 + (i - FIRST_EVENT) * 7, seq, now)
  out[i - FIRST_EVENT + 1] = answer
  local entries = filed[index] or {}
  filed[index] = entries
  entries[#entries + 1] = score
  entries[#entries + 1] = id
end
for index, entries in pairs(filed) do call_batched('ZADD', index, entries) end
bump('pending', #fresh)
return out
`

/**
 * The batch script for one event (KEYS: the 14 index keys and the event's; ARGV: now and its
 * 7), answering the same one-element list, with only what one event needs: no loop, no
 * batching, the count raised with one HINCRBY (a count raised is never 0). With `{ tx }` a
 * single-event enqueue, the call every request makes, sends this text as EVAL in the
 * caller's MULTI, where Redis hashes (SHA1) the text of every EVAL to find the compiled
 * script: this text is about a third of the batch script's.
 */
export const OUTBOX_FIND_OR_CREATE_ONE = `${OUTBOX_KEYS}${DEAD_BELOW}${OUTBOX_WRITE_NEW}
local key = KEYS[FIRST_EVENT]
if redis.call('EXISTS', key) == 1 then return {redis.call('HGETALL', key)} end
local answer, index, score, id = write_new(key, 2, redis.call('INCR', SEQ), ARGV[1])
redis.call('ZADD', index, score, id)
redis.call('HINCRBY', COUNTS, 'pending', 1)
return {answer}
`

/**
 * ARGV: now, leaseUntil, workerId, limit, cap, deadLettersBlockKeys ('1' or '0'). Returns the
 * claimed events (HGETALL each).
 *
 * Claimable = due pending (READY, after promoting DELAYED events whose availableAt <= now)
 * or publishing with an expired lease (LEASES scored by leaseUntil <= now). The first
 * `limit` of READY by seq and the expired leases are merged by seq, so the result is in
 * enqueue order across both kinds. Everything happens inside one script, so two claimers
 * can never take the same event: the second one runs after the first has moved it out of
 * READY and pushed its lease into the future.
 *
 * Ordering keys: READY holds only the head of each key (the others are PARKED), so a claim
 * takes at most one event per key without looking at the rest of the key; a 'skip' claim
 * also takes the heads waiting behind a dead letter (BLOCKED). The head stays in its key's
 * live set while publishing, so the next event waits until it is sent (or dead, for 'skip'),
 * and a redriven dead letter waits behind it (the redrive pins it, see LIVE in the base). An
 * expired lease is taken when its event is still its key's head, whatever the dead letters
 * below it: a key with an event publishing has that one claimable event, for 'block' too
 * (a 'skip' claim took it past them; the same event is claimed again, never another).
 *
 * `cap` bounds the work of one call: at most that many due events are promoted and that
 * many expired leases considered (the rest on the next call).
 */
const OUTBOX_CLAIM = `${OUTBOX_PRELUDE}
local now, lease_until, worker, limit, cap = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local block = ARGV[6] == '1'
local due = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', now, 'LIMIT', 0, cap)
for _, id in ipairs(due) do
  local f = redis.call('HMGET', EVENT .. id, 'seq', 'orderingKey', 'keySeq')
  if f[2] and dead_below(f[2], f[3]) then
    redis.call('ZADD', BLOCKED, f[1], id)
  else
    redis.call('ZADD', READY, f[1], id)
  end
  redis.call('ZREM', DELAYED, id)
end
local expired = redis.call('ZRANGEBYSCORE', LEASES, '-inf', now, 'LIMIT', 0, cap)
local blocked = block and {} or redis.call('ZRANGE', BLOCKED, 0, limit - 1, 'WITHSCORES')
-- claimed: the ids this claim takes, in seq order; taken: how many of them were pending.
local claimed, taken = {}, 0
if #expired == 0 and #blocked == 0 then
  -- The usual claim: READY alone has candidates, already in seq order, and ZPOPMIN takes
  -- them out of it in one command (no merge, no sort, no ZREM of the batch).
  local popped = redis.call('ZPOPMIN', READY, limit)
  for i = 1, #popped, 2 do claimed[#claimed + 1] = popped[i] end
  taken = #claimed
else
  local candidates = {}
  local ready = redis.call('ZRANGE', READY, 0, limit - 1, 'WITHSCORES')
  for i = 1, #ready, 2 do candidates[#candidates + 1] = { ready[i], tonumber(ready[i + 1]), true } end
  for i = 1, #blocked, 2 do candidates[#candidates + 1] = { blocked[i], tonumber(blocked[i + 1]), true } end
  for _, id in ipairs(expired) do
    local f = redis.call('HMGET', EVENT .. id, 'seq', 'orderingKey')
    local head = not f[2] or redis.call('ZRANGE', LIVE .. f[2], 0, 0)[1] == id
    if head then candidates[#candidates + 1] = { id, tonumber(f[1]), false } end
  end
  table.sort(candidates, function(a, b) return a[2] < b[2] end)
  local pending = {}
  for i = 1, math.min(limit, #candidates) do
    claimed[i] = candidates[i][1]
    if candidates[i][3] then pending[#pending + 1] = candidates[i][1] end
  end
  -- A due pending event is in READY (or BLOCKED) alone (DELAYED only holds events not due,
  -- and the ones promoted above left it).
  call_batched('ZREM', READY, pending)
  if not block then call_batched('ZREM', BLOCKED, pending) end
  taken = #pending
end
local out, leases, claims = {}, {}, {}
for i, id in ipairs(claimed) do
  local key = EVENT .. id
  redis.call('HSET', key, 'status', 'publishing', 'claimedAt', now, 'claimedBy', worker, 'leaseUntil', lease_until)
  leases[#leases + 1] = lease_until
  leases[#leases + 1] = id
  claims[#claims + 1] = now
  claims[#claims + 1] = id
  out[i] = redis.call('HGETALL', key)
end
-- The lease and publishing indexes and the counts move once for the whole batch.
call_batched('ZADD', LEASES, leases)
call_batched('ZADD', PUBLISHING, claims)
if taken > 0 then
  bump('pending', -taken)
  bump('publishing', taken)
end
return out
`

/**
 * Read-only. ARGV: now, limit, cap. Due pending events in enqueue order: the head of READY
 * merged by seq with the DELAYED events that are due by now but not promoted yet (a claim
 * promotes them; findPending must not write, so it computes the same set without moving),
 * and with the keyed events no claim would take now (BLOCKED heads, and the due ones among
 * the first `cap` PARKED): findPending is a read, not a claim.
 */
const OUTBOX_FIND_PENDING = `${OUTBOX_PRELUDE}
local now, limit, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local candidates = {}
local ready = redis.call('ZRANGE', READY, 0, limit - 1, 'WITHSCORES')
for i = 1, #ready, 2 do candidates[#candidates + 1] = { ready[i], tonumber(ready[i + 1]) } end
local due = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', now, 'LIMIT', 0, cap)
for _, id in ipairs(due) do
  candidates[#candidates + 1] = { id, tonumber(redis.call('HGET', EVENT .. id, 'seq')) }
end
local blocked = redis.call('ZRANGE', BLOCKED, 0, limit - 1, 'WITHSCORES')
for i = 1, #blocked, 2 do candidates[#candidates + 1] = { blocked[i], tonumber(blocked[i + 1]) } end
local found, scanned = 0, 0
while found < limit and scanned < cap do
  local parked = redis.call('ZRANGE', PARKED, scanned, scanned + limit - 1, 'WITHSCORES')
  if #parked == 0 then break end
  for i = 1, #parked, 2 do
    if tonumber(redis.call('HGET', EVENT .. parked[i], 'availableAt')) <= tonumber(now) then
      candidates[#candidates + 1] = { parked[i], tonumber(parked[i + 1]) }
      found = found + 1
    end
  end
  scanned = scanned + #parked / 2
end
table.sort(candidates, function(a, b) return a[2] < b[2] end)
local out = {}
for i = 1, math.min(limit, #candidates) do out[i] = redis.call('HGETALL', EVENT .. candidates[i][1]) end
return out
`

/** KEYS: prelude, event key. ARGV: id, now. Returns 0 when not stored, else 1. */
const OUTBOX_MARK_PUBLISHING = `${OUTBOX_PRELUDE}
local key, id, now = KEYS[FIRST_EVENT], ARGV[1], ARGV[2]
local f = redis.call('HMGET', key, 'status', 'orderingKey', 'keySeq')
local status, okey = f[1], f[2]
if not status then return 0 end
leave(id, status, okey)
-- claimedBy and leaseUntil are left as they are: an event leased by claim keeps its lease.
redis.call('HSET', key, 'status', 'publishing', 'claimedAt', now)
redis.call('ZADD', PUBLISHING, now, id)
bump('publishing', 1)
if okey then
  -- Pinned: pending events of the key below it are parked behind it (see LIVE above). A
  -- publishing head is pinned first, so it stays ahead of this one if its keySeq is lower.
  pin_publishing_head(okey)
  redis.call('ZADD', LIVE .. okey, pinned(f[3]), id)
  settle(okey, now, 2)
end
return 1
`

/** KEYS: prelude, event key. ARGV: id, now, workerId or ''. Returns 1, 0 (not stored) or -1 (lease lost). */
const OUTBOX_MARK_SENT = `${OUTBOX_PRELUDE}
local key, id = KEYS[FIRST_EVENT], ARGV[1]
local status, code, okey = fenced_status(key, ARGV[3])
if not status then return code end
mark_sent(key, id, status, okey, ARGV[2])
return 1
`

/**
 * KEYS: prelude. ARGV: now, workerId or '', (distinct) ids... Returns the ids applied. What
 * mark_sent does per event, with the index and count updates gathered into one ZREM or ZADD
 * per index and one HINCRBY per status for the whole batch; the keyed events then leave their
 * keys' sets, and each key is settled once they all left. The event keys are built from
 * EVENT, as the claim builds them, instead of being sent beside the ids: a batch of 100 sends
 * 100 arguments fewer (the relay's hot path), and the hash tag keeps them in the slot.
 */
const OUTBOX_MARK_MANY_SENT = `${OUTBOX_PRELUDE}
local now, worker, applied, sent, keyed = ARGV[1], ARGV[2], {}, {}, {}
local STATUSES = { 'pending', 'publishing', 'sent', 'failed' }
local left = { pending = {}, publishing = {}, sent = {}, failed = {} }
for i = 3, #ARGV do
  local id = ARGV[i]
  local key = EVENT .. id
  local status, _, okey = fenced_status(key, worker)
  if status then
    local from = left[status]
    from[#from + 1] = id
    redis.call('HDEL', key, 'claimedBy', 'leaseUntil')
    redis.call('HSET', key, 'status', 'sent', 'sentAt', now)
    sent[#sent + 1] = now
    sent[#sent + 1] = id
    applied[#applied + 1] = id
    if okey then keyed[#keyed + 1] = { id, status, okey } end
  end
end
call_batched('ZREM', READY, left.pending)
call_batched('ZREM', DELAYED, left.pending)
call_batched('ZREM', PUBLISHING, left.publishing)
call_batched('ZREM', SENT, left.sent)
call_batched('ZREM', FAILED, left.failed)
call_batched('ZREM', LEASES, applied)
call_batched('ZADD', SENT, sent)
for _, status in ipairs(STATUSES) do
  local delta = -#left[status]
  if status == 'sent' then delta = delta + #applied end
  if delta ~= 0 then bump(status, delta) end
end
-- The usual keyed event is its key's publishing head, alone of its key in the batch (a claim
-- hands out heads): the next event of the key, parked until now, becomes the head and is filed
-- at once (4 commands; READY gets one ZADD for the batch). Any other case takes the general
-- way: every event of the batch leaves its key's sets, then each such key is settled.
local in_batch, unsettled, seen, ready = {}, {}, {}, {}
for _, k in ipairs(keyed) do in_batch[k[3]] = (in_batch[k[3]] or 0) + 1 end
local any_failed = #keyed > 0 and redis.call('ZCARD', FAILED) > 0
for _, k in ipairs(keyed) do
  local id, status, okey = k[1], k[2], k[3]
  local low = status == 'publishing' and in_batch[okey] == 1 and redis.call('ZRANGE', LIVE .. okey, 0, 1)
  if low and low[1] == id then
    redis.call('ZREM', LIVE .. okey, id)
    local next_id = low[2]
    local f = next_id and redis.call('HMGET', EVENT .. next_id, 'status', 'availableAt', 'seq', 'keySeq')
    if f and f[1] == 'pending' then
      if redis.call('ZREM', PARKED, next_id) == 0 then
        file_keyed(EVENT .. next_id, next_id, now)
      elseif tonumber(f[2]) > tonumber(now) then
        redis.call('ZADD', DELAYED, f[2], next_id)
      elseif any_failed and dead_below(okey, f[4]) then
        redis.call('ZADD', BLOCKED, f[3], next_id)
      else
        ready[#ready + 1] = f[3]
        ready[#ready + 1] = next_id
      end
    end
  else
    if status == 'pending' then
      redis.call('ZREM', BLOCKED, id)
      redis.call('ZREM', PARKED, id)
    end
    if status == 'failed' then
      redis.call('ZREM', DEAD .. okey, id)
    elseif status ~= 'sent' then
      redis.call('ZREM', LIVE .. okey, id)
    end
    if not seen[okey] then
      seen[okey] = true
      unsettled[#unsettled + 1] = okey
    end
  end
end
call_batched('ZADD', READY, ready)
for _, okey in ipairs(unsettled) do settle(okey, now, 1) end
return applied
`

/** KEYS: prelude, event key. ARGV: id, errorMessage, workerId or '', now. Returns 1, 0 or -1. */
const OUTBOX_MARK_FAILED = `${OUTBOX_PRELUDE}
local key, id = KEYS[FIRST_EVENT], ARGV[1]
local status, code, okey = fenced_status(key, ARGV[3])
if not status then return code end
leave(id, status, okey)
clear_lease(key, id)
redis.call('HSET', key, 'status', 'failed', 'errorMessage', ARGV[2])
redis.call('HINCRBY', key, 'retryCount', 1)
redis.call('ZADD', FAILED, redis.call('HGET', key, 'seq'), id)
bump('failed', 1)
if okey then
  redis.call('ZADD', DEAD .. okey, redis.call('HGET', key, 'keySeq'), id)
  settle(okey, ARGV[4], 1)
end
return 1
`

/**
 * KEYS: prelude, event key. ARGV: id, now, availableAt, errorMessage, workerId or ''. Returns
 * 1, 0 or -1. A retry due at once goes back into READY at its seq; a delayed one into DELAYED.
 * A keyed one stays its key's head through its backoff (its key's live set keeps it).
 */
const OUTBOX_RETRY_LATER = `${OUTBOX_PRELUDE}
local key, id, now, available_at = KEYS[FIRST_EVENT], ARGV[1], ARGV[2], ARGV[3]
local status, code, okey = fenced_status(key, ARGV[5])
if not status then return code end
leave(id, status, okey)
clear_lease(key, id)
redis.call('HSET', key, 'status', 'pending', 'errorMessage', ARGV[4], 'availableAt', available_at)
redis.call('HINCRBY', key, 'retryCount', 1)
enter_pending(key, id, now)
return 1
`

/**
 * KEYS: prelude, one event key per (distinct) id. ARGV: now, ids... Returns { requeued,
 * missing ids... }: the others are requeued before the caller throws for a missing one.
 */
const OUTBOX_REQUEUE_FAILED = `${OUTBOX_PRELUDE}
local now, out = ARGV[1], { 0 }
for i = FIRST_EVENT, #KEYS do
  local key, id = KEYS[i], ARGV[i - FIRST_EVENT + 2]
  local f = redis.call('HMGET', key, 'status', 'orderingKey')
  local status = f[1]
  if not status then
    out[#out + 1] = id
  elseif status == 'failed' then
    leave(id, status, f[2])
    clear_lease(key, id)
    redis.call('HSET', key, 'status', 'pending', 'availableAt', now, 'retryCount', 0)
    -- A 'skip' claim may have gone past this dead letter: a later event of its key may be
    -- publishing, and must stay the only one of the key in flight (and the one its lease gives
    -- back). The claim needs no check for it, so this costs only redrives.
    if f[2] then pin_publishing_head(f[2]) end
    enter_pending(key, id, now)
    out[1] = out[1] + 1
  end
end
return out
`

/** KEYS: prelude, one event key per id. ARGV: leaseUntil, workerId, ids... Returns the ids renewed. */
const OUTBOX_RENEW_LEASE = `${OUTBOX_PRELUDE}
local lease_until, worker, renewed = ARGV[1], ARGV[2], {}
for i = FIRST_EVENT, #KEYS do
  local id = ARGV[i - FIRST_EVENT + 3]
  local f = redis.call('HMGET', KEYS[i], 'status', 'claimedBy')
  if f[1] == 'publishing' and f[2] == worker then
    redis.call('HSET', KEYS[i], 'leaseUntil', lease_until)
    redis.call('ZADD', LEASES, lease_until, id)
    renewed[#renewed + 1] = id
  end
end
return renewed
`

/**
 * ARGV: cutoff, now, limit. Publishing events claimed before the cutoff (PUBLISHING is
 * scored by claimedAt, never enqueuedAt) go back to pending with availableAt unchanged.
 * Returns how many; the kernel repeats while a full batch came back.
 */
const OUTBOX_RESET_STALE = `${OUTBOX_PRELUDE}
local now = ARGV[2]
local ids = redis.call('ZRANGEBYSCORE', PUBLISHING, '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  local key = EVENT .. id
  leave(id, 'publishing', redis.call('HGET', key, 'orderingKey'))
  clear_lease(key, id)
  redis.call('HSET', key, 'status', 'pending')
  enter_pending(key, id, now)
end
return #ids
`

/**
 * ARGV: cutoff, limit. Deletes up to `limit` sent events with sentAt < cutoff; returns how
 * many. A sent event is in no set of its ordering key, and the key's counter (KEYSEQ) stays.
 */
const OUTBOX_CLEANUP = `${OUTBOX_PRELUDE}
local ids = redis.call('ZRANGEBYSCORE', SENT, '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('DEL', EVENT .. id)
  leave(id, 'sent')
end
return #ids
`

/** Read-only. ARGV: limit. Dead letters, oldest enqueued first. */
const OUTBOX_GET_FAILED = `${OUTBOX_PRELUDE}
local ids = redis.call('ZRANGE', FAILED, 0, tonumber(ARGV[1]) - 1)
local out = {}
for i, id in ipairs(ids) do out[i] = redis.call('HGETALL', EVENT .. id) end
return out
`

// ---------------------------------------------------------------------------------------
// Inbox
// ---------------------------------------------------------------------------------------

const INBOX_PRELUDE = `
local EVENT, ALIAS, PROCESSING, PROCESSED, FAILED, COUNTS, SEQ =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]

local function bump(status, delta)
  if redis.call('HINCRBY', COUNTS, status, delta) == 0 then redis.call('HDEL', COUNTS, status) end
end

local function pad(s, n)
  s = tostring(s)
  return string.rep('0', n - #s) .. s
end

-- FAILED is ordered lexically (all scores 0): receivedAt, then seq, then the id.
local function failed_member(key, id)
  local f = redis.call('HMGET', key, 'receivedAt', 'seq')
  return pad(f[1], 15) .. pad(f[2], 16) .. id
end

local function leave(key, id, status)
  if status == 'processing' then
    redis.call('ZREM', PROCESSING, id)
  elseif status == 'processed' then
    redis.call('ZREM', PROCESSED, id)
  elseif status == 'failed' then
    redis.call('ZREM', FAILED, failed_member(key, id))
  end
  bump(status, -1)
end

local function enter_failed(key, id, message)
  redis.call('HSET', key, 'status', 'failed', 'errorMessage', message)
  redis.call('HDEL', key, 'claimedBy', 'leaseUntil')
  redis.call('ZADD', FAILED, 0, failed_member(key, id))
  bump('failed', 1)
end

-- The stored event of this delivery, by its id alone: (stream, streamSeq) is recorded, never
-- an identity (a JetStream stream re-created under its name restarts at sequence 1). A
-- redelivery of a stored id keeps the position recorded first.
local function lookup(key)
  if redis.call('EXISTS', key) == 1 then return key end
  return nil
end

-- ARGV layout shared by findOrCreate and claim:
-- id, subject, payload, hasHeaders, headers, stream ('' = none), streamSeq, now
local function insert(key)
  local id, now = ARGV[1], ARGV[8]
  local seq = redis.call('INCR', SEQ)
  redis.call('HSET', key, 'eventId', id, 'subject', ARGV[2], 'payload', ARGV[3], 'status', 'processing',
    'receivedAt', now, 'deliveries', 1, 'seq', seq)
  if ARGV[4] == '1' then redis.call('HSET', key, 'headers', ARGV[5]) end
  if ARGV[6] ~= '' then redis.call('HSET', key, 'stream', ARGV[6], 'streamSeq', ARGV[7]) end
  redis.call('ZADD', PROCESSING, now, id)
  bump('processing', 1)
end
`

/**
 * KEYS: prelude, event key. ARGV: see insert(). Returns 1 for a new event
 * (the caller knows what was written) or the stored event with deliveries + 1.
 */
const INBOX_FIND_OR_CREATE = `${INBOX_PRELUDE}
local key = KEYS[8]
local found = lookup(key)
if found then
  redis.call('HINCRBY', found, 'deliveries', 1)
  return redis.call('HGETALL', found)
end
insert(key)
return 1
`

/**
 * KEYS: prelude, event key. ARGV: insert()'s, then leaseUntil, workerId.
 * Returns { 1 } for a new event (claimed), { 2, event } when a stored event is taken over,
 * { 0, event } for a duplicate. The check and the takeover are one script, so of N
 * concurrent claims exactly one sees the event claimable; every call counts a delivery.
 */
const INBOX_CLAIM = `${INBOX_PRELUDE}
local key = KEYS[8]
local now, lease_until, worker = ARGV[8], ARGV[9], ARGV[10]
local found = lookup(key)
if not found then
  insert(key)
  redis.call('HSET', key, 'claimedAt', now, 'claimedBy', worker, 'leaseUntil', lease_until)
  return { 1 }
end
redis.call('HINCRBY', found, 'deliveries', 1)
local f = redis.call('HMGET', found, 'status', 'leaseUntil', 'eventId')
local status, lease, id = f[1], f[2], f[3]
-- processing without a lease comes from the findOrCreate flow: its handler may be running.
if status == 'processed' or (status == 'processing' and (not lease or tonumber(lease) > tonumber(now))) then
  return { 0, redis.call('HGETALL', found) }
end
leave(found, id, status)
redis.call('HSET', found, 'status', 'processing', 'claimedAt', now, 'claimedBy', worker, 'leaseUntil', lease_until)
redis.call('HDEL', found, 'errorMessage')
redis.call('ZADD', PROCESSING, now, id)
bump('processing', 1)
return { 2, redis.call('HGETALL', found) }
`

/**
 * The fence of the inbox marks, as the outbox's: a worker holds the claim while the event is
 * processing and claimed by it (an expired lease nobody took over still counts). worker ''
 * means the caller did not fence (a workerId is never empty). Returns the status and 1, or
 * nil and 0 (not stored) / -1 (lease lost).
 */
const INBOX_FENCE = `
local function inbox_fenced(key, worker)
  local f = redis.call('HMGET', key, 'status', 'claimedBy')
  if not f[1] then return nil, 0 end
  if worker ~= '' and (f[1] ~= 'processing' or f[2] ~= worker) then return nil, -1 end
  return f[1], 1
end
`

/**
 * KEYS: prelude, event key. ARGV: id, now, worker ('' unfenced), 'queued' when the script
 * runs inside a caller's MULTI. Returns 0 when not stored (a no-op, so that a caller's EXEC
 * is not failed by an event cleaned up meanwhile), -1 when the fence refused, else 1. Queued,
 * a refused fence is an error reply: Redis cannot undo the caller's commands queued before
 * it, so EXEC must not report success (the pin of INBOX_HOLD makes this the rare case of an
 * EXEC sent later than a whole lease after the mark).
 */
const INBOX_MARK_PROCESSED = `${INBOX_PRELUDE}${INBOX_FENCE}
local key, id, now = KEYS[8], ARGV[1], ARGV[2]
local status, code = inbox_fenced(key, ARGV[3])
if code == -1 and ARGV[4] == 'queued' then
  return redis.error_reply('TXBOXLEASELOST the worker no longer holds the lease on the inbox event')
end
if not status then return code end
leave(key, id, status)
redis.call('HSET', key, 'status', 'processed', 'processedAt', now)
redis.call('HDEL', key, 'claimedBy', 'leaseUntil')
redis.call('ZADD', PROCESSED, now, id)
bump('processed', 1)
return 1
`

/**
 * KEYS: event key. ARGV: worker, now. The fence of a processed mark queued into a caller's
 * MULTI, checked when the mark is called: 0 not stored, -1 lease lost, else 1, and then the
 * claim is pinned until the caller's EXEC: a lease shorter than its own length from now is
 * extended to it (the score that resetStale reads, claimedAt, is unchanged), so no other
 * worker can take the event over between this check and the EXEC that marks it processed.
 */
const INBOX_HOLD = `${INBOX_FENCE}
local key, now = KEYS[1], tonumber(ARGV[2])
local status, code = inbox_fenced(key, ARGV[1])
if not status then return code end
if ARGV[1] ~= '' then
  local f = redis.call('HMGET', key, 'claimedAt', 'leaseUntil')
  local claimed, lease = tonumber(f[1]), tonumber(f[2])
  if claimed and lease and lease < now + (lease - claimed) then
    redis.call('HSET', key, 'leaseUntil', now + (lease - claimed))
  end
end
return 1
`

/**
 * KEYS: prelude, event key. ARGV: id, errorMessage, worker ('' unfenced). Returns 0 when not
 * stored, -1 when the fence refused (unfenced: the event is processed, which is final), else 1.
 */
const INBOX_MARK_FAILED = `${INBOX_PRELUDE}${INBOX_FENCE}
local key, id = KEYS[8], ARGV[1]
local status, code = inbox_fenced(key, ARGV[3])
if not status then return code end
if status == 'processed' then return -1 end
leave(key, id, status)
enter_failed(key, id, ARGV[2])
return 1
`

/**
 * ARGV: cutoff, limit, message. Processing events whose claim time (PROCESSING's score:
 * claimedAt, else receivedAt) is before the cutoff become failed. Returns how many.
 */
const INBOX_RESET_STALE = `${INBOX_PRELUDE}
local ids = redis.call('ZRANGEBYSCORE', PROCESSING, '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  local key = EVENT .. id
  leave(key, id, 'processing')
  enter_failed(key, id, ARGV[3])
end
return #ids
`

/**
 * ARGV: cutoff, limit. Deletes processed events with processedAt < cutoff, and the version 1
 * alias of each one if it still names it: those aliases are never read any more, and drain
 * away with their events.
 */
const INBOX_CLEANUP = `${INBOX_PRELUDE}
local ids = redis.call('ZRANGEBYSCORE', PROCESSED, '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  local key = EVENT .. id
  local f = redis.call('HMGET', key, 'stream', 'streamSeq')
  if f[1] then
    local alias_key = ALIAS .. f[2] .. ':' .. f[1]
    if redis.call('GET', alias_key) == id then redis.call('DEL', alias_key) end
  end
  redis.call('DEL', key)
  leave(key, id, 'processed')
end
return #ids
`

/** Read-only. ARGV: limit. Failed events, oldest received first (seq breaks ties). */
const INBOX_GET_FAILED = `${INBOX_PRELUDE}
local members = redis.call('ZRANGE', FAILED, 0, tonumber(ARGV[1]) - 1)
local out = {}
for i, m in ipairs(members) do out[i] = redis.call('HGETALL', EVENT .. string.sub(m, 32)) end
return out
`

// ---------------------------------------------------------------------------------------
// Migration history
// ---------------------------------------------------------------------------------------

/**
 * KEYS: the schema key. ARGV: a layout version. Raises the recorded version to it, never
 * lowers it: two processes migrating at once (or an older release after a newer one) leave
 * the highest. A value that is not a number is foreign data and is left alone.
 */
const SCHEMA_RECORD = `
local current = redis.call('GET', KEYS[1])
if current and not string.match(current, '^%d+$') then
  return redis.error_reply('ERR the schema key holds ' .. current .. ', not a layout version')
end
if not current or tonumber(current) < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
`

/** The scripts, compiled once per process (the SHA1 is computed here, not per call). */
export const scripts = {
  outboxFindOrCreate: new LuaScript(OUTBOX_FIND_OR_CREATE),
  outboxFindOrCreateOne: new LuaScript(OUTBOX_FIND_OR_CREATE_ONE),
  outboxClaim: new LuaScript(OUTBOX_CLAIM),
  outboxFindPending: new LuaScript(OUTBOX_FIND_PENDING),
  outboxMarkPublishing: new LuaScript(OUTBOX_MARK_PUBLISHING),
  outboxMarkSent: new LuaScript(OUTBOX_MARK_SENT),
  outboxMarkManySent: new LuaScript(OUTBOX_MARK_MANY_SENT),
  outboxMarkFailed: new LuaScript(OUTBOX_MARK_FAILED),
  outboxRetryLater: new LuaScript(OUTBOX_RETRY_LATER),
  outboxRequeueFailed: new LuaScript(OUTBOX_REQUEUE_FAILED),
  outboxRenewLease: new LuaScript(OUTBOX_RENEW_LEASE),
  outboxResetStale: new LuaScript(OUTBOX_RESET_STALE),
  outboxCleanup: new LuaScript(OUTBOX_CLEANUP),
  outboxGetFailed: new LuaScript(OUTBOX_GET_FAILED),
  inboxFindOrCreate: new LuaScript(INBOX_FIND_OR_CREATE),
  inboxClaim: new LuaScript(INBOX_CLAIM),
  inboxMarkProcessed: new LuaScript(INBOX_MARK_PROCESSED),
  inboxHold: new LuaScript(INBOX_HOLD),
  inboxMarkFailed: new LuaScript(INBOX_MARK_FAILED),
  inboxResetStale: new LuaScript(INBOX_RESET_STALE),
  inboxCleanup: new LuaScript(INBOX_CLEANUP),
  inboxGetFailed: new LuaScript(INBOX_GET_FAILED),
  schemaRecord: new LuaScript(SCHEMA_RECORD),
} as const
