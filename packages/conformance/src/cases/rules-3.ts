import type { OutboxEvent } from '@txbox/core'
import { expectEqual, expectIds, expectSame, ms, storedInbox, storedOutbox } from '../assertions.js'
import { defineCase, requiresTransactions } from '../case.js'
import { inboxEvent, outboxEvent } from '../events.js'
import type { ConformanceFixture } from '../target.js'

/**
 * The last rules of issue 19 that only unit tests pinned: one id in two open transactions,
 * the failed-inbox order when a clock steps back, what a dead letter keeps, what
 * `markManyAsSent` answers for a repeated id, what a not-found message names, and the claim
 * time a new inbox claim stores.
 */

const MINUTE = 60_000
const HOUR = 60 * MINUTE

/** A promise the case opens by hand: the two transactions below wait on them. */
export const gate = (): { readonly promise: Promise<void>; readonly open: () => void } => {
  let open = (): void => {}
  const promise = new Promise<void>((resolve) => {
    open = resolve
  })
  return { promise, open }
}

/**
 * Up to `count` macrotasks: long enough for a second transaction that needs no I/O to open
 * (memory, MULTI, a collector) and usually for a round trip; the outcome checked never
 * depends on how far the second transaction got.
 */
export const turns = async (count: number): Promise<void> => {
  for (let index = 0; index < count; index++) await new Promise((resolve) => setImmediate(resolve))
}

type Ending = 'commit' | 'rollback'

/** How the second transaction ended: what its enqueue answered, or the error it met. */
type SecondOutcome = { readonly event: OutboxEvent } | { readonly error: unknown }

/**
 * Enqueues `eventId` in a first transaction, then in a second one opened while the first is
 * still open, ends the first, then the second. On a store that makes the second insert wait
 * (PostgreSQL, MySQL), the second enqueue is usually in flight when the first ends; on a
 * store that decides at commit (memory, Redis, a DynamoDB collector) both are queued and the
 * first commit comes first. `began`: the second transaction's function ran.
 */
const twoOpenTransactions = async (
  store: ConformanceFixture,
  eventId: string,
  first: Ending,
  second: Ending,
): Promise<{ readonly outcome: SecondOutcome; readonly began: boolean }> => {
  const firstWrote = gate()
  const endFirst = gate()
  const firstDone = store.transaction(
    async (tx) => {
      await store.outbox.findOrCreate(outboxEvent(eventId, { payload: '"first"' }), { tx })
      firstWrote.open()
      await endFirst.promise
    },
    { rollback: first === 'rollback' },
  )
  await Promise.race([firstWrote.promise, firstDone])
  const secondBegan = gate()
  let began = false
  const endSecond = gate()
  const secondDone = store.transaction(
    async (tx) => {
      began = true
      secondBegan.open()
      const event = await store.outbox.findOrCreate(outboxEvent(eventId, { payload: '"second"' }), { tx })
      await endSecond.promise
      return event
    },
    { rollback: second === 'rollback' },
  )
  // A second transaction that waits for the first (a single writer's BEGIN) cannot begin
  // before the first ends: wait for it a bounded number of turns only.
  await Promise.race([secondBegan.promise.then(() => turns(1)), secondDone.catch(() => {}), turns(50)])
  endFirst.open()
  await firstDone
  endSecond.open()
  const outcome = await secondDone.then(
    (event): SecondOutcome => ({ event }),
    (error: unknown): SecondOutcome => ({ error }),
  )
  return { outcome, began }
}

/** The payload stored for `eventId`, asserting exactly one row holds it. */
const storedPayload = async (store: ConformanceFixture, eventId: string): Promise<string> =>
  (await storedOutbox(store, eventId)).payload

export const ruleCases3 = [
  defineCase({
    id: 'outbox.tx.two-open-transactions',
    title:
      'one id enqueued in two open transactions: the first to commit stores its event, the other stores nothing, and rolling back either never removes the event the other commits',
    skipReason: requiresTransactions,
    async run({ store, capabilities }) {
      const singleWriter = capabilities.claim === 'single-writer'
      const race = async (eventId: string, first: Ending, second: Ending): Promise<SecondOutcome> => {
        const { outcome, began } = await twoOpenTransactions(store, eventId, first, second)
        if (!('error' in outcome) || began) return outcome
        // The second transaction could not even open while the first was: only a single
        // writer may refuse that, and there it opens once the first has ended.
        expectSame(
          singleWriter,
          true,
          `${eventId}: the fixture must open a second transaction while one is open (the store's claim is not single-writer); it failed with ${String((outcome.error as Error)?.message ?? outcome.error)}`,
        )
        const event = await store.transaction(
          (tx) => store.outbox.findOrCreate(outboxEvent(eventId, { payload: '"second"' }), { tx }),
          { rollback: second === 'rollback' },
        )
        expectSame(
          event.payload,
          first === 'commit' ? '"first"' : '"second"',
          `${eventId}: the transaction opened after the first ended finds what the first left`,
        )
        return { event }
      }

      // 1. The first commits, then the second commits.
      const bothCommit = await race('both-commit', 'commit', 'commit')
      if ('error' in bothCommit) {
        // MongoDB aborts the second transaction, a DynamoDB collector's conditional Put
        // cancels it (CONTRACT §1): the caller retries it, and the retry finds the event.
        const retried = await store.transaction((tx) =>
          store.outbox.findOrCreate(outboxEvent('both-commit', { payload: '"second"' }), { tx }),
        )
        expectSame(
          retried.payload,
          '"first"',
          'a retry of the aborted second transaction finds the first event',
        )
      }
      expectSame(
        await storedPayload(store, 'both-commit'),
        '"first"',
        'oracle: the first commit stored its event; the second commit changed nothing',
      )

      // 2. The first rolls back: the second stores its own event.
      const firstRollsBack = await race('first-rolls-back', 'rollback', 'commit')
      if ('error' in firstRollsBack) {
        await store.transaction((tx) =>
          store.outbox.findOrCreate(outboxEvent('first-rolls-back', { payload: '"second"' }), { tx }),
        )
      } else {
        expectSame(
          firstRollsBack.event.payload,
          '"second"',
          'with the first rolled back, the second enqueue answers its own event',
        )
      }
      expectSame(
        await storedPayload(store, 'first-rolls-back'),
        '"second"',
        "oracle: the first transaction's rollback left the second's event",
      )

      // 3. The first commits, the second rolls back: the first's event stays.
      await race('second-rolls-back', 'commit', 'rollback')
      expectSame(
        await storedPayload(store, 'second-rolls-back'),
        '"first"',
        "oracle: the second transaction's rollback did not remove the first's event",
      )
      expectSame(await store.oracle.outboxCount(), 3, 'oracle: one row per id, nothing else')
    },
  }),
  defineCase({
    id: 'inbox.failed.clock-back',
    title:
      'inbox getFailedEvents lists by receivedAt, not by arrival: a message received after the clock stepped back comes first',
    async run({ store, clock }) {
      const t0 = clock.peekMs()
      const lease = { leaseMs: HOUR, workerId: 'w' }
      // Ids, arrival and failure order all put `arrived-first` first; receivedAt does not.
      clock.set(t0 + HOUR)
      await store.inbox.claim(inboxEvent('arrived-first'), lease)
      clock.set(t0)
      await store.inbox.claim(inboxEvent('arrived-second'), lease)
      await store.inbox.markAsFailed('arrived-first', 'boom')
      await store.inbox.markAsFailed('arrived-second', 'boom')
      expectSame(
        ms((await storedInbox(store, 'arrived-second')).receivedAt),
        t0,
        'oracle: the second arrival was received at the earlier instant',
      )
      expectIds(
        await store.inbox.getFailedEvents(),
        ['arrived-second', 'arrived-first'],
        'oldest received first, whatever the arrival order',
      )
      expectIds(await store.inbox.getFailedEvents(1), ['arrived-second'], 'limit keeps the oldest received')
    },
  }),
  defineCase({
    id: 'outbox.failed.keeps-available-at',
    title:
      'markAsFailed leaves availableAt as it was (a backoff, a delayed publish): a dead letter changes status, errorMessage and retryCount only',
    async run({ store, clock }) {
      const t0 = clock.peekMs()
      const lease = { leaseMs: MINUTE, workerId: 'w', limit: 10 }
      await store.outbox.findOrCreate(outboxEvent('delayed', { availableAt: new Date(t0 + HOUR) }))
      await store.outbox.findOrCreate(outboxEvent('backed-off'))
      await store.outbox.claim(lease)
      await store.outbox.retryLater('backed-off', {
        errorMessage: 'first try',
        delayMs: MINUTE,
        workerId: 'w',
      })
      clock.advance(MINUTE)
      expectIds(await store.outbox.claim(lease), ['backed-off'], 'the backed-off event is due again')
      clock.advance(1_000)
      await store.outbox.markAsFailed('backed-off', 'poison', { workerId: 'w' })
      await store.outbox.markAsFailed('delayed', 'cancelled')
      for (const [id, availableAt] of [
        ['backed-off', t0 + MINUTE],
        ['delayed', t0 + HOUR],
      ] as const) {
        const stored = await storedOutbox(store, id)
        expectSame(stored.status, 'failed', `oracle: ${id} is a dead letter`)
        expectSame(ms(stored.availableAt), availableAt, `oracle: ${id} keeps its availableAt`)
        expectSame(
          ms((await store.outbox.get(id))?.availableAt),
          availableAt,
          `get: ${id} keeps its availableAt`,
        )
      }
    },
  }),
  defineCase({
    id: 'outbox.sent.repeated-ids',
    title:
      'markManyAsSent with a repeated id answers what marking the ids one by one would: with workerId the repeat finds the lease released and is listed, without it nothing is',
    async run({ store }) {
      const lease = { leaseMs: MINUTE, workerId: 'w', limit: 2 }
      await store.outbox.findOrCreateMany([outboxEvent('held-1'), outboxEvent('held-2')])
      expectIds(await store.outbox.claim(lease), ['held-1', 'held-2'], 'both claimed')
      expectEqual(
        await store.outbox.markManyAsSent(['held-1', 'held-1', 'held-2'], { workerId: 'w' }),
        ['held-1'],
        'fenced: the repeat of held-1 finds its lease released',
      )
      await store.outbox.findOrCreate(outboxEvent('unfenced'))
      expectEqual(
        await store.outbox.markManyAsSent(['unfenced', 'unfenced']),
        [],
        'unfenced: marking a sent event sent again applies',
      )
      for (const id of ['held-1', 'held-2', 'unfenced'])
        expectSame((await storedOutbox(store, id)).status, 'sent', `oracle: ${id} is sent`)
    },
  }),
  defineCase({
    id: 'inbox.validation.not-found-names-side',
    title:
      'an EventNotFoundError message names, after the [txbox] [<adapter>] prefix, the side (inbox or outbox) and the id',
    async run({ store }) {
      const probes: readonly [side: 'inbox' | 'outbox', label: string, call: () => Promise<unknown>][] = [
        ['inbox', 'markAsProcessed', () => store.inbox.markAsProcessed('no-such-id')],
        ['inbox', 'markAsFailed', () => store.inbox.markAsFailed('no-such-id', 'x')],
        ['outbox', 'markAsSent', () => store.outbox.markAsSent('no-such-id')],
      ]
      for (const [side, label, call] of probes) {
        const message = await call().then(
          () => 'no error',
          (error: unknown) => String((error as { message?: unknown })?.message),
        )
        expectSame(
          /^\[txbox\] \[[^\]]+\] (inbox|outbox)\b/.exec(message)?.[1],
          side,
          `${side} ${label} of an unknown id: the message must name the ${side}; got ${message}`,
        )
        expectSame(
          message.includes('no-such-id'),
          true,
          `${side} ${label}: the message names the id; got ${message}`,
        )
      }
    },
  }),
  defineCase({
    id: 'inbox.claim.records-claim-time',
    title:
      'a new inbox claim stores its worker, its claim time (now) and its lease on the row, as a claim of a stored message does',
    async run({ store, clock }) {
      const t0 = clock.peekMs()
      await store.inbox.claim(inboxEvent('new'), { leaseMs: MINUTE, workerId: 'first' })
      const stored = await storedInbox(store, 'new')
      expectSame(stored.claimedBy, 'first', 'oracle: the claim stored its worker')
      expectSame(ms(stored.claimedAt), t0, 'oracle: the claim stored its time')
      expectSame(ms(stored.leaseUntil), t0 + MINUTE, 'oracle: the claim stored its lease')
      clock.advance(2 * MINUTE)
      await store.inbox.claim(inboxEvent('new'), { leaseMs: MINUTE, workerId: 'second' })
      const reclaimed = await storedInbox(store, 'new')
      expectSame(reclaimed.claimedBy, 'second', 'oracle: the takeover stored its worker')
      expectSame(ms(reclaimed.claimedAt), t0 + 2 * MINUTE, 'oracle: the takeover stored its time')
    },
  }),
]
