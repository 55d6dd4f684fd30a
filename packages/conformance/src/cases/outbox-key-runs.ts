import type { Capabilities, EnqueueParams, OutboxEvent, OutboxRepository } from '@txbox/core'
import { expectEqual, expectIds, expectSame, mustBeSame, storedOutbox } from '../assertions.js'
import { defineCase } from '../case.js'
import { outboxEvent } from '../events.js'
import type { ConformanceFixture } from '../target.js'

/**
 * Key runs (docs/CONTRACT.md §2 "Key runs"): with `keyRun` n a claim may hand one claimer the
 * head of a key and the key's next unsent events in `keySeq` order while each is claimable,
 * at most n of them; `release` gives back the claims of a run's events never published.
 */

const SECOND = 1_000
const MINUTE = 60 * SECOND
const HOUR = 60 * MINUTE

/** The skip reason of a target whose capabilities do not declare `keyRuns: true`. */
export const NO_KEY_RUNS_REASON = 'the target does not declare keyRuns'

const requiresKeyRuns = (capabilities: Capabilities): string | undefined =>
  capabilities.keyRuns === true ? undefined : NO_KEY_RUNS_REASON

const keyed = (eventId: string, orderingKey: string, overrides: Partial<EnqueueParams> = {}): EnqueueParams =>
  outboxEvent(eventId, { orderingKey, ...overrides })

type Release = NonNullable<OutboxRepository<unknown>['release']>

/** The outbox's `release`, which a target declaring `keyRuns` must have. */
const releaseOf = (o: ConformanceFixture['outbox']): Release => {
  const release = (o as OutboxRepository<unknown>).release
  mustBeSame(
    typeof release,
    'function',
    'the capabilities declare keyRuns: the outbox must have release(eventIds, { workerId })',
  )
  return (release as Release).bind(o)
}

/** Claims and mark helpers shared by the cases. */
const helpers = (store: ConformanceFixture) => {
  const o = store.outbox
  return {
    o,
    claim: (workerId: string, keyRun: number, limit = 100) =>
      o.claim({ limit, leaseMs: MINUTE, workerId, keyRun }),
    sent: async (ids: readonly string[], workerId: string) =>
      expectEqual(
        await o.markManyAsSent(ids, { workerId }),
        [],
        `${ids.join(', ')} marked sent by ${workerId}`,
      ),
    /** Checks the events are `pending` and held by no one (never claimed, or given back). */
    expectWaiting: async (ids: readonly string[], label: string) => {
      for (const id of ids) {
        const row = await storedOutbox(store, id)
        expectSame(row.status, 'pending', `${label}: oracle: ${id} pending`)
        expectSame(row.claimedBy, undefined, `${label}: oracle: ${id} held by no one`)
      }
    },
  }
}

/** Checks every event of `events` carries the same claimedBy and leaseUntil as the first. */
const expectOneLease = (events: readonly OutboxEvent[], workerId: string, label: string): void => {
  const lease = events[0]?.leaseUntil?.getTime()
  for (const event of events) {
    expectSame(event.claimedBy, workerId, `${label}: ${event.eventId} held by ${workerId}`)
    expectSame(event.leaseUntil?.getTime(), lease, `${label}: ${event.eventId} under the run's one lease`)
  }
}

export const outboxKeyRunCases = [
  defineCase({
    id: 'outbox.key-runs.one-claimer',
    title:
      "a claim with keyRun n returns a key's head and its next events in keySeq order (at most n, under one lease) to one claimer; no other claimer gets an event of the key while the run is held; other keys and unkeyed events flow",
    skipReason: requiresKeyRuns,
    async run({ store }) {
      const { o, claim, sent, expectWaiting } = helpers(store)
      await o.findOrCreateMany([
        keyed('a1', 'A'),
        keyed('b1', 'B'),
        keyed('a2', 'A'),
        outboxEvent('u1'),
        keyed('a3', 'A'),
        keyed('a4', 'A'),
        keyed('b2', 'B'),
      ])
      const first = await claim('w1', 3)
      expectIds(
        first,
        ['a1', 'b1', 'a2', 'u1', 'a3', 'b2'],
        'keyRun 3: a1..a3 and b1, b2, in enqueue order; a4 waits',
      )
      const a = first.filter((event) => event.orderingKey === 'A')
      expectEqual(
        a.map((event) => event.keySeq),
        [...a.map((event) => event.keySeq)].sort((x, y) => (x ?? 0) - (y ?? 0)),
        "the run's events in keySeq order",
      )
      expectOneLease(a, 'w1', 'the run of A')
      await expectWaiting(['a4'], 'past keyRun 3')
      await o.findOrCreateMany([keyed('a5', 'A'), keyed('c1', 'C'), outboxEvent('u2')])
      expectIds(
        await claim('w2', 3),
        ['c1', 'u2'],
        'a second claimer: nothing of A or B while w1 holds their runs (a4, a5 due); C and unkeyed flow',
      )
      await expectWaiting(['a4', 'a5'], 'while the run of A is held')
      await sent(['a1', 'a2'], 'w1')
      expectIds(await claim('w2', 3), [], 'a3 of the run still publishing: A stays held')
      await sent(['a3', 'b1', 'b2', 'u1'], 'w1')
      const next = await claim('w2', 3)
      expectIds(next, ['a4', 'a5'], 'the run done: the next claimer takes the rest of A as its run')
      expectOneLease(next, 'w2', 'the second run of A')
    },
  }),

  defineCase({
    id: 'outbox.key-runs.limit',
    title:
      'a claim takes the claimable heads and unkeyed events in enqueue order, each head with its run, until limit events: the limit counts every event of a run and may cut the last one; keyRun 1 (and no keyRun) claims only heads, as before',
    skipReason: requiresKeyRuns,
    async run({ store }) {
      const { o, claim, sent } = helpers(store)
      await o.findOrCreateMany([
        keyed('p1', 'P'),
        keyed('q1', 'Q'),
        keyed('p2', 'P'),
        outboxEvent('u1'),
        keyed('q2', 'Q'),
        keyed('p3', 'P'),
        keyed('q3', 'Q'),
      ])
      expectIds(
        await claim('w', 3, 3),
        ['p1', 'p2', 'p3'],
        'limit 3, keyRun 3: the run of P, the first head, fills it',
      )
      expectIds(
        await claim('w', 3, 4),
        ['q1', 'u1', 'q2', 'q3'],
        'limit 4, keyRun 3: the run of Q, then u1 (in enqueue order in the result)',
      )
      await sent(['p1', 'p2', 'p3', 'q1', 'u1', 'q2', 'q3'], 'w')
      await o.findOrCreateMany([
        keyed('r1', 'R'),
        keyed('t1', 'T'),
        keyed('r2', 'R'),
        keyed('t2', 'T'),
        keyed('r3', 'R'),
      ])
      expectIds(
        await claim('w', 2, 3),
        ['r1', 't1', 'r2'],
        "limit 3, keyRun 2: R's run, then T's cut after its head",
      )
      await sent(['r1', 't1', 'r2'], 'w')
      expectIds(await claim('w', 1), ['t2', 'r3'], 'keyRun 1: the head of each key only')
      await o.findOrCreateMany([keyed('t3', 'T')])
      expectIds(
        await o.claim({ limit: 100, leaseMs: MINUTE, workerId: 'w' }),
        [],
        'no keyRun: nothing behind the heads',
      )
      await sent(['t2', 'r3'], 'w')
      expectIds(
        await o.claim({ limit: 100, leaseMs: MINUTE, workerId: 'w' }),
        ['t3'],
        'no keyRun: the next head',
      )
    },
  }),

  defineCase({
    id: 'outbox.key-runs.stops',
    title:
      'a run stops at the first event of its key that is not claimable: not due yet, retried into its backoff, a dead letter (under either policy); sent events are never returned',
    skipReason: requiresKeyRuns,
    async run({ store, clock }) {
      const { o, claim, sent, expectWaiting } = helpers(store)
      const t0 = clock.peekMs()
      await o.findOrCreateMany([
        keyed('d1', 'D'),
        keyed('d2', 'D', { availableAt: new Date(t0 + HOUR) }),
        keyed('d3', 'D'),
        keyed('r1', 'R'),
        keyed('r2', 'R'),
        keyed('r3', 'R'),
        keyed('f1', 'F'),
        keyed('f2', 'F'),
        keyed('f3', 'F'),
        keyed('f4', 'F'),
      ])
      expectIds(await claim('w', 1), ['d1', 'r1', 'f1'], 'the heads (keyRun 1)')
      await sent(['d1'], 'w')
      expectIds(await claim('w', 10), [], 'd2 not due: nothing of D (d3 is due but behind it)')
      await expectWaiting(['d2', 'd3'], 'behind the not-due d2')
      // r1 comes back: r2, r3 follow it in a run
      await sent(['r1'], 'w')
      const r = await claim('w', 10)
      expectIds(r, ['r2', 'r3'], 'R: the run r2, r3')
      await o.retryLater('r2', { errorMessage: 'publish failed', delayMs: 30 * SECOND, workerId: 'w' })
      expectEqual(await o.release?.(['r3'], { workerId: 'w' }), [], 'r3 released')
      await o.findOrCreateMany([keyed('r4', 'R')])
      expectIds(await claim('w', 10), [], 'r2 in its backoff: nothing of R (r3, r4 due behind it)')
      await expectWaiting(['r3', 'r4'], 'behind the retried r2')
      clock.advance(30 * SECOND)
      expectIds(await claim('w', 10), ['r2', 'r3', 'r4'], 'after the backoff: r2 first, then r3, r4')
      await sent(['r2', 'r3', 'r4'], 'w')

      // F: f1 dead-lettered; with 'skip' the key goes on without it, then f1 is redriven while
      // f2 and f3 are sent: a run from f1 passes over the sent ones.
      await o.markAsFailed('f1', 'dead letter', { workerId: 'w' })
      expectIds(await claim('w', 10), [], "f1 a dead letter: F held ('block')")
      const skipped = await o.claim({
        limit: 100,
        leaseMs: MINUTE,
        workerId: 'w',
        keyRun: 2,
        keyedDeadLetters: 'skip',
      })
      expectIds(skipped, ['f2', 'f3'], "'skip': the run goes on without f1")
      await sent(['f2', 'f3'], 'w')
      expectSame(await o.requeueFailed(['f1']), 1, 'f1 redriven')
      const redriven = await claim('w', 10)
      expectSame(
        redriven.some((event) => event.eventId === 'f2' || event.eventId === 'f3'),
        false,
        `sent events are never in a run; got ${redriven.map((event) => event.eventId).join(', ')}`,
      )
      expectEqual(
        [...redriven.map((event) => event.eventId)].sort(),
        ['f1', 'f4'],
        'the redriven f1 and f4, the unsent events of F',
      )
      // A dead letter ends a run, under 'skip' too: h2 dead-lettered while its run is held,
      // h1 given back: the run from h1 stops before h2.
      await o.findOrCreateMany([keyed('h1', 'H'), keyed('h2', 'H'), keyed('h3', 'H')])
      expectIds(await claim('w', 2), ['h1', 'h2'], 'the run h1, h2')
      await o.markAsFailed('h2', 'dead letter', { workerId: 'w' })
      expectEqual(await o.release?.(['h1'], { workerId: 'w' }), [], 'h1 released')
      expectIds(
        await o.claim({ limit: 100, leaseMs: MINUTE, workerId: 'w', keyRun: 10, keyedDeadLetters: 'skip' }),
        ['h1'],
        "'skip': the run from h1 stops at the dead letter h2 (h3 waits for the next claim)",
      )
      // A run stops at a follower not due yet, though its head is due.
      await o.findOrCreateMany([
        keyed('x1', 'X'),
        keyed('x2', 'X', { availableAt: new Date(t0 + HOUR) }),
        keyed('x3', 'X'),
      ])
      expectIds(await claim('w', 10), ['x1'], 'X: x1 only; the run stops at x2, not due (x3 is due)')
      await expectWaiting(['x2', 'x3'], 'behind the not-due x2')
    },
  }),

  defineCase({
    id: 'outbox.key-runs.release',
    title:
      'release gives back only the claims its worker holds (another worker releases nothing and is told so), to pending with retryCount, errorMessage and availableAt unchanged; the released events are claimable again at once, in keySeq order',
    skipReason: requiresKeyRuns,
    async run({ store, clock }) {
      const { o, claim, sent, expectWaiting } = helpers(store)
      const release = releaseOf(o)
      await o.findOrCreateMany([keyed('k1', 'K'), keyed('k2', 'K'), keyed('k3', 'K'), keyed('k4', 'K')])
      expectIds(await claim('w1', 1), ['k1'], 'k1 alone')
      await o.retryLater('k1', { errorMessage: 'first try failed', delayMs: 0, workerId: 'w1' })
      const before = await storedOutbox(store, 'k1')
      const run = await claim('w1', 4)
      expectIds(run, ['k1', 'k2', 'k3', 'k4'], 'the run k1..k4')
      expectEqual(
        await release(['k1', 'k2'], { workerId: 'w2' }),
        ['k1', 'k2'],
        "another worker's release applies to nothing and lists every id",
      )
      for (const id of ['k1', 'k2', 'k3', 'k4'])
        expectSame((await storedOutbox(store, id)).claimedBy, 'w1', `${id} still held by w1`)
      expectEqual(
        await release(['missing-id'], { workerId: 'w1' }),
        ['missing-id'],
        'an id not stored is listed',
      )
      clock.advance(SECOND)
      expectEqual(
        await release(['k4', 'k3', 'k2', 'k1', 'k3'], { workerId: 'w1' }),
        ['k3'],
        'w1 releases its run; the repeated k3 is listed (its claim is already given back)',
      )
      await expectWaiting(['k1', 'k2', 'k3', 'k4'], 'after release')
      const k1 = await storedOutbox(store, 'k1')
      expectSame(before.retryCount, 1, 'k1 was retried once')
      expectSame(k1.retryCount, 1, 'release keeps retryCount')
      expectSame(k1.errorMessage, 'first try failed', 'release keeps errorMessage')
      expectSame(k1.availableAt.getTime(), before.availableAt.getTime(), 'release keeps availableAt')
      expectSame(k1.leaseUntil, undefined, 'lease cleared')
      const k2 = await storedOutbox(store, 'k2')
      expectSame(k2.retryCount, 0, 'release counts no attempt')
      expectSame(k2.errorMessage, undefined, 'release sets no errorMessage')
      const again = await claim('w3', 4)
      expectIds(again, ['k1', 'k2', 'k3', 'k4'], 'released events claimable at once, in keySeq order')
      await sent(['k1'], 'w3')
      expectEqual(await release(['k1'], { workerId: 'w3' }), ['k1'], 'a sent event is not released')
      expectSame((await storedOutbox(store, 'k1')).status, 'sent', 'k1 stays sent')
    },
  }),

  defineCase({
    id: 'outbox.key-runs.expired-run',
    title:
      "a run whose lease expired is claimed again from its lowest unsent event by another worker, with the rest of the run; the old holder's marks are refused",
    skipReason: requiresKeyRuns,
    async run({ store, clock }) {
      const { o, claim, sent } = helpers(store)
      await o.findOrCreateMany([keyed('e1', 'E'), keyed('e2', 'E'), keyed('e3', 'E'), keyed('e4', 'E')])
      expectIds(await claim('w1', 3), ['e1', 'e2', 'e3'], 'w1: the run e1..e3')
      await sent(['e1'], 'w1')
      expectIds(await claim('w2', 1), [], 'the run is held')
      clock.advance(MINUTE)
      expectIds(
        await claim('w2', 1),
        ['e2'],
        'expired: keyRun 1 takes the lowest unsent event of the run, e2',
      )
      clock.advance(MINUTE)
      const again = await claim('w3', 10)
      expectIds(again, ['e2', 'e3', 'e4'], 'expired again: w3 takes e2, e3 and the pending e4 as its run')
      expectOneLease(again, 'w3', "w3's run")
      expectEqual(
        await o.markManyAsSent(['e2', 'e3'], { workerId: 'w1' }),
        ['e2', 'e3'],
        "w1's late marks refused",
      )
      expectEqual(await o.release?.(['e4'], { workerId: 'w2' }), ['e4'], "w2's release refused")
      await sent(['e2', 'e3', 'e4'], 'w3')
    },
  }),

  defineCase({
    id: 'outbox.key-runs.validation',
    title:
      'keyRun must be an integer from 1 to the claim’s limit: anything else is refused with a ValidationError naming keyRun, before any write',
    skipReason: requiresKeyRuns,
    async run({ store }) {
      const o = store.outbox
      await o.findOrCreateMany([keyed('v1', 'V'), keyed('v2', 'V')])
      for (const keyRun of [0, -1, 1.5, 11, Number.NaN, '2'] as unknown[]) {
        let refused = ''
        try {
          await o.claim({ limit: 10, leaseMs: MINUTE, workerId: 'w', keyRun: keyRun as number })
        } catch (error) {
          const e = error as { name?: unknown; message?: unknown }
          refused = e?.name === 'ValidationError' && typeof e.message === 'string' ? e.message : ''
        }
        expectSame(
          /outbox: keyRun\b/.test(refused),
          true,
          `keyRun ${String(keyRun)} with limit 10: a ValidationError naming keyRun; got ${refused || 'none'}`,
        )
      }
      expectSame((await storedOutbox(store, 'v1')).status, 'pending', 'nothing claimed by a refused claim')
      expectIds(
        await o.claim({ limit: 2, leaseMs: MINUTE, workerId: 'w', keyRun: 2 }),
        ['v1', 'v2'],
        'keyRun = limit is fine',
      )
    },
  }),
]
