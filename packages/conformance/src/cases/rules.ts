import type { InboxEvent, OutboxEvent } from '@txbox/core'
import {
  expectEqual,
  expectIds,
  expectSame,
  expectTxboxError,
  mustEqual,
  storedInbox,
  storedOutbox,
} from '../assertions.js'
import { defineCase, requiresTransactions } from '../case.js'
import { inboxEvent, outboxEvent, scrambledId } from '../events.js'
import type { ConformanceFixture } from '../target.js'

/**
 * Rules that mutating our own adapters showed no other case checks (issue 19, point 9):
 * each change to an adapter that broke one of them left the rest of the suite green.
 */

const SECOND = 1_000
const MINUTE = 60_000
const HOUR = 3_600_000
const DAY = 86_400_000

/** Reads every named outbox row through the oracle, keyed by id. */
const outboxRows = async (store: ConformanceFixture, ids: readonly string[]) =>
  new Map(await Promise.all(ids.map(async (id) => [id, await storedOutbox(store, id)] as const)))

/** A value as the field-by-field comparison sees it: dates by their instant, the rest as is. */
const comparable = (value: unknown): unknown => (value instanceof Date ? `Date(${value.getTime()})` : value)

const OUTBOX_FIELDS = [
  'eventId',
  'subject',
  'payload',
  'headers',
  'status',
  'enqueuedAt',
  'sentAt',
  'errorMessage',
  'retryCount',
  'availableAt',
  'claimedAt',
  'claimedBy',
  'leaseUntil',
] as const satisfies readonly (keyof OutboxEvent)[]

const INBOX_FIELDS = [
  'eventId',
  'subject',
  'payload',
  'headers',
  'stream',
  'streamSeq',
  'status',
  'receivedAt',
  'processedAt',
  'deliveries',
  'errorMessage',
  'claimedAt',
  'claimedBy',
  'leaseUntil',
] as const satisfies readonly (keyof InboxEvent)[]

/**
 * Checks that an event an adapter returned is the stored row, field by field (each field its
 * own check, so every difference is reported). `stored` is read through the oracle right
 * after the call that returned `returned`, before anything else writes.
 */
const expectAsStored = (
  returned: object | null | undefined,
  stored: object | null,
  fields: readonly string[],
  label: string,
): void => {
  expectSame(returned === null || returned === undefined, false, `${label}: an event is returned`)
  expectSame(stored === null, false, `${label}: oracle: the event is stored`)
  if (!returned || !stored) return
  const got = returned as Record<string, unknown>
  const row = stored as Record<string, unknown>
  for (const field of fields) {
    expectSame(
      comparable(got[field]),
      comparable(row[field]),
      `${label}: ${field} must equal the stored row's (oracle)`,
    )
  }
}

const expectOutboxAsStored = async (store: ConformanceFixture, returned: OutboxEvent | null, label: string) =>
  expectAsStored(
    returned,
    returned ? await store.oracle.outbox(returned.eventId) : null,
    OUTBOX_FIELDS,
    label,
  )

const expectInboxAsStored = async (store: ConformanceFixture, returned: InboxEvent | null, label: string) =>
  expectAsStored(returned, returned ? await store.oracle.inbox(returned.eventId) : null, INBOX_FIELDS, label)

const FORMER = 'w-former'

export const ruleCases = [
  defineCase({
    id: 'outbox.claim.fenced-after-release',
    title:
      'a worker that once held the claim cannot mark, fail, retry, renew or bulk-mark the event once it left publishing (sent, failed, retried, requeued, reset, reclaimed)',
    async run({ store, clock }) {
      const t0 = clock.peekMs()
      // Claimed alone with a 1 s lease, so that a second worker takes it over later.
      await store.outbox.findOrCreate(outboxEvent('was-reclaimed'))
      mustEqual(
        (await store.outbox.claim({ limit: 1, leaseMs: SECOND, workerId: FORMER })).map((e) => e.eventId),
        ['was-reclaimed'],
        'the former holder claims was-reclaimed',
      )
      // Later by 1 ms, so the takeover below finds was-reclaimed first without a tie to break.
      clock.advance(1)
      const released = ['was-failed', 'was-requeued', 'was-reset', 'was-retried', 'was-sent']
      await store.outbox.findOrCreateMany(released.map((id) => outboxEvent(id)))
      mustEqual(
        (await store.outbox.claim({ limit: 10, leaseMs: HOUR, workerId: FORMER }))
          .map((e) => e.eventId)
          .sort(),
        released,
        'the former holder claims the rest',
      )
      await store.outbox.markAsSent('was-sent', { workerId: FORMER })
      await store.outbox.markAsFailed('was-failed', 'dead', { workerId: FORMER })
      await store.outbox.retryLater('was-retried', { errorMessage: 'later', delayMs: HOUR, workerId: FORMER })
      await store.outbox.markAsFailed('was-requeued', 'dead', { workerId: FORMER })
      mustEqual(await store.outbox.requeueFailed(['was-requeued']), 1, 'was-requeued is requeued')
      clock.set(t0 + 2 * MINUTE)
      // The 1 s lease ran out long ago; was-reclaimed is first in enqueue order.
      mustEqual(
        (await store.outbox.claim({ limit: 1, leaseMs: HOUR, workerId: 'w-new' })).map((e) => e.eventId),
        ['was-reclaimed'],
        'another worker takes was-reclaimed over',
      )
      mustEqual(await store.outbox.resetStale(1), 1, 'resetStale resets was-reset (claimed 2 minutes ago)')
      const ids = ['was-reclaimed', ...released]
      const before = await outboxRows(store, ids)
      for (const id of released)
        expectSame(before.get(id)?.claimedBy, undefined, `oracle: ${id} is held by nobody`)
      expectSame(before.get('was-reclaimed')?.claimedBy, 'w-new', 'oracle: was-reclaimed is held by w-new')
      // A write that slips through now stamps a new time, so the oracle would see it.
      clock.advance(SECOND)
      const fence = { workerId: FORMER }
      for (const id of ids) {
        await expectTxboxError(
          'LeaseLostError',
          () => store.outbox.markAsSent(id, fence),
          `markAsSent(${id})`,
        )
        await expectTxboxError(
          'LeaseLostError',
          () => store.outbox.markAsFailed(id, 'late failure', fence),
          `markAsFailed(${id})`,
        )
        await expectTxboxError(
          'LeaseLostError',
          () => store.outbox.retryLater(id, { errorMessage: 'late retry', delayMs: 5, ...fence }),
          `retryLater(${id})`,
        )
        expectIds(
          await store.outbox.renewLease([id], { leaseMs: HOUR, ...fence }),
          [],
          `renewLease([${id}]) renews nothing`,
        )
        expectIds(
          await store.outbox.markManyAsSent([id], fence),
          [id],
          `markManyAsSent([${id}]) reports it not applied`,
        )
        expectEqual(await storedOutbox(store, id), before.get(id), `oracle: ${id} is unchanged`)
      }
      expectIds(
        await store.outbox.renewLease(ids, { leaseMs: HOUR, ...fence }),
        [],
        'renewLease of all six renews nothing',
      )
      expectIds(await store.outbox.markManyAsSent(ids, fence), ids, 'markManyAsSent of all six applies none')
      expectEqual(await outboxRows(store, ids), before, 'oracle: no row changed')
      await store.outbox.markAsSent('was-reclaimed', { workerId: 'w-new' })
      expectSame(
        (await storedOutbox(store, 'was-reclaimed')).status,
        'sent',
        'oracle: the current holder still completes was-reclaimed',
      )
    },
  }),
  defineCase({
    id: 'outbox.find-pending.pending-only',
    title:
      'findPending returns only pending events that are due, in enqueue order: never publishing (even with an expired lease), sent or failed ones',
    async run({ store, clock }) {
      const t0 = clock.peekMs()
      await store.outbox.findOrCreate(outboxEvent('expired-lease'))
      await store.outbox.claim({ limit: 1, leaseMs: SECOND, workerId: 'w' })
      await store.outbox.findOrCreate(outboxEvent('leased'))
      await store.outbox.claim({ limit: 1, leaseMs: HOUR, workerId: 'w' })
      // One enqueue per millisecond: the order under test needs no tie broken (outbox.order.*).
      for (const event of [
        outboxEvent('due-1'),
        outboxEvent('sent'),
        outboxEvent('failed'),
        outboxEvent('marked-publishing'),
        outboxEvent('later', { availableAt: new Date(t0 + 10 * MINUTE) }),
        outboxEvent('due-2'),
      ]) {
        clock.advance(1)
        await store.outbox.findOrCreate(event)
      }
      await store.outbox.markAsSent('sent')
      await store.outbox.markAsFailed('failed', 'dead')
      await store.outbox.markAsPublishing('marked-publishing')
      clock.advance(SECOND)
      expectIds(await store.outbox.findPending(), ['due-1', 'due-2'], 'only the due pending events')
      expectIds(await store.outbox.findPending({ limit: 1 }), ['due-1'], 'limit applies to pending events')
      clock.set(t0 + 10 * MINUTE)
      expectIds(
        await store.outbox.findPending(),
        ['due-1', 'later', 'due-2'],
        'a delayed event is pending once due, in its enqueue place',
      )
      const expired = await storedOutbox(store, 'expired-lease')
      expectSame(expired.status, 'publishing', 'oracle: findPending took no claim (expired-lease)')
      expectSame(expired.claimedBy, 'w', 'oracle: expired-lease is still held by its worker')
      expectSame((await storedOutbox(store, 'due-1')).status, 'pending', 'oracle: due-1 still pending')
    },
  }),
  defineCase({
    id: 'outbox.cleanup.status-not-sent-at',
    title:
      'cleanup deletes by status: events that left sent (failed, pending, publishing) survive even with an old sentAt',
    async run({ store, clock }) {
      const t0 = clock.peekMs()
      const left = ['then-failed', 'then-retried', 'then-publishing', 'then-requeued']
      await store.outbox.findOrCreateMany(['old-sent', ...left].map((id) => outboxEvent(id)))
      // Every event is sent first, so each carries a sentAt from 3 days before the cleanup;
      // the unfenced writes of the API then move it out of `sent`.
      for (const id of ['old-sent', ...left]) await store.outbox.markAsSent(id)
      await store.outbox.markAsFailed('then-failed', 'failed after it was sent')
      await store.outbox.retryLater('then-retried', { errorMessage: 'send again', delayMs: 0 })
      await store.outbox.markAsPublishing('then-publishing')
      await store.outbox.markAsFailed('then-requeued', 'failed after it was sent')
      expectSame(await store.outbox.requeueFailed(['then-requeued']), 1, 'then-requeued is requeued')
      for (const [id, status] of [
        ['then-failed', 'failed'],
        ['then-retried', 'pending'],
        ['then-publishing', 'publishing'],
        ['then-requeued', 'pending'],
      ] as const)
        expectSame((await storedOutbox(store, id)).status, status, `oracle: ${id} is ${status}`)
      clock.set(t0 + 3 * DAY)
      expectSame(await store.outbox.cleanup(1), 1, 'cleanup deletes only the event still sent')
      expectSame(await store.oracle.outbox('old-sent'), null, 'oracle: old-sent is deleted')
      for (const id of left) await storedOutbox(store, id)
      expectSame(await store.outbox.cleanup(0), 0, 'not even cleanup(0) deletes an event that is not sent')
      expectSame(await store.oracle.outboxCount(), left.length, 'oracle: the four events that left sent')
    },
  }),
  defineCase({
    id: 'outbox.retry.failed-listing',
    title:
      'outbox getFailedEvents lists only failed events, oldest enqueued first; an event that left failed is no longer listed',
    async run({ store, clock }) {
      // Scrambled ids, failed in reverse order: neither id nor failure time is the order.
      const ids = Array.from({ length: 6 }, (_, index) => scrambledId(index, 'dl'))
      const [d0, d1, d2, d3, d4, d5] = ids as [string, string, string, string, string, string]
      for (const id of ids) {
        await store.outbox.findOrCreate(outboxEvent(id))
        clock.advance(1)
      }
      for (const id of [...ids].reverse()) {
        await store.outbox.markAsFailed(id, `dead ${id}`)
        clock.advance(SECOND)
      }
      await store.outbox.findOrCreateMany([outboxEvent('held'), outboxEvent('pending'), outboxEvent('sent')])
      await store.outbox.markAsSent('sent')
      await store.outbox.claim({ limit: 1, leaseMs: HOUR, workerId: 'w' })
      expectIds(await store.outbox.getFailedEvents(), ids, 'every dead letter, oldest enqueued first')
      expectIds(await store.outbox.getFailedEvents(2), [d0, d1], 'limit keeps the oldest')
      // Every way out of failed the API offers.
      expectSame(await store.outbox.requeueFailed([d1]), 1, `${d1} is requeued`)
      await store.outbox.markAsSent(d2)
      await store.outbox.retryLater(d3, { errorMessage: 'again', delayMs: 0 })
      await store.outbox.markAsPublishing(d4)
      expectIds(await store.outbox.getFailedEvents(), [d0, d5], 'events that left failed are not listed')
      expectIds(await store.outbox.getFailedEvents(1), [d0], 'limit counts only failed events')
      const claimed = await store.outbox.claim({ limit: 10, leaseMs: HOUR, workerId: 'w' })
      expectIds(claimed, [d1, d3, 'pending'], 'the requeued and retried events are claimed')
      await store.outbox.markAsFailed(d3, 'dead again', { workerId: 'w' })
      expectIds(
        await store.outbox.getFailedEvents(),
        [d0, d3, d5],
        'an event that failed again is listed in its enqueue place',
      )
      for (const id of [d1, d2, d4])
        expectSame((await storedOutbox(store, id)).status === 'failed', false, `oracle: ${id} is not failed`)
      expectSame((await store.outbox.getCountByStatus()).failed, 3, 'three events are counted failed')
    },
  }),
  defineCase({
    id: 'inbox.failed.listing',
    title:
      'inbox getFailedEvents lists only failed messages, oldest received first; a message that left failed is no longer listed',
    async run({ store, clock }) {
      const t0 = clock.peekMs()
      const lease = { leaseMs: HOUR, workerId: 'w' }
      // Received one second apart under scrambled ids, failed in reverse order.
      const ids = Array.from({ length: 5 }, (_, index) => scrambledId(index, 'in'))
      const [m0, m1, m2, m3, m4] = ids as [string, string, string, string, string]
      for (const id of ids) {
        await store.inbox.claim(inboxEvent(id), lease)
        clock.advance(SECOND)
      }
      await store.inbox.claim(inboxEvent('processed'), lease)
      await store.inbox.markAsProcessed('processed')
      await store.inbox.claim(inboxEvent('processing'), lease)
      for (const id of [m4, m3, m1, m0]) {
        await store.inbox.markAsFailed(id, `failed ${id}`)
        clock.advance(SECOND)
      }
      // m2 is timed out by resetStale instead; it was received (and claimed) at t0 + 2 s.
      clock.set(t0 + 2 * SECOND + 10 * MINUTE + 1)
      expectSame(await store.inbox.resetStale(10), 1, 'resetStale fails only m2 (claimed > 10 min ago)')
      expectIds(await store.inbox.getFailedEvents(), ids, 'every failed message, oldest received first')
      expectIds(await store.inbox.getFailedEvents(2), [m0, m1], 'limit keeps the oldest')
      // Ways out of failed: a new claim, then processed; or a claim that stays processing.
      expectSame(
        (await store.inbox.claim(inboxEvent(m1), lease)).shouldProcess,
        true,
        `${m1} is claimed again`,
      )
      await store.inbox.markAsProcessed(m1)
      expectSame(
        (await store.inbox.claim(inboxEvent(m3), lease)).shouldProcess,
        true,
        `${m3} is claimed again`,
      )
      expectIds(await store.inbox.getFailedEvents(), [m0, m2, m4], 'messages that left failed are not listed')
      expectIds(await store.inbox.getFailedEvents(1), [m0], 'limit counts only failed messages')
      await store.inbox.markAsFailed(m3, 'failed again')
      expectIds(
        await store.inbox.getFailedEvents(),
        [m0, m2, m3, m4],
        'a message that failed again is listed in its place by receipt time',
      )
      expectSame((await storedInbox(store, m1)).status, 'processed', `oracle: ${m1} is processed`)
      expectSame((await storedInbox(store, m3)).status, 'failed', `oracle: ${m3} is failed`)
      expectSame((await store.inbox.getCountByStatus()).failed, 4, 'four messages are counted failed')
    },
  }),
  defineCase({
    id: 'inbox.failed.same-instant-arrival',
    title: 'inbox getFailedEvents lists messages received at one instant in arrival order, before later ones',
    async run({ store, clock }) {
      const t0 = clock.peekMs()
      const lease = { leaseMs: HOUR, workerId: 'w' }
      // Scrambled ids: the three received together sort the other way round by id, and the
      // later one sorts first, so neither id order nor failure order passes for arrival.
      const [later, tie0, tie1, tie2] = Array.from({ length: 4 }, (_, index) => scrambledId(index, 'rx')) as [
        string,
        string,
        string,
        string,
      ]
      for (const id of [tie0, tie1, tie2]) await store.inbox.claim(inboxEvent(id), lease)
      clock.advance(SECOND)
      await store.inbox.claim(inboxEvent(later), lease)
      for (const id of [tie2, later, tie0, tie1]) await store.inbox.markAsFailed(id, `failed ${id}`)
      for (const id of [tie0, tie1, tie2]) {
        expectSame(
          (await storedInbox(store, id)).receivedAt.getTime(),
          t0,
          `oracle: ${id} was received at t0`,
        )
      }
      expectIds(
        await store.inbox.getFailedEvents(),
        [tie0, tie1, tie2, later],
        'one instant in arrival order, then the later message',
      )
      expectIds(await store.inbox.getFailedEvents(2), [tie0, tie1], 'limit keeps the first arrivals')
    },
  }),
  defineCase({
    id: 'outbox.validation.empty-inputs',
    title:
      'empty id lists (findOrCreateMany, markManyAsSent, renewLease, requeueFailed) return empty results and touch nothing',
    async run({ store, clock }) {
      const lease = { leaseMs: MINUTE, workerId: 'w' }
      await store.outbox.findOrCreateMany(['held', 'dead', 'waiting'].map((id) => outboxEvent(id)))
      await store.outbox.claim({ limit: 1, ...lease })
      await store.outbox.markAsFailed('dead', 'poison')
      const ids = ['held', 'dead', 'waiting']
      const before = await outboxRows(store, ids)
      const counts = await store.outbox.getCountByStatus()
      // Any write that slips through now stamps a different time.
      clock.advance(SECOND)
      expectEqual(await store.outbox.findOrCreateMany([]), [], 'findOrCreateMany([]) returns []')
      expectEqual(
        await store.outbox.markManyAsSent([], { workerId: 'w' }),
        [],
        'markManyAsSent([], { workerId }) returns []',
      )
      expectEqual(await store.outbox.markManyAsSent([]), [], 'markManyAsSent([]) returns []')
      expectEqual(await store.outbox.renewLease([], lease), [], 'renewLease([]) returns []')
      expectSame(await store.outbox.requeueFailed([]), 0, 'requeueFailed([]) returns 0')
      expectEqual(await outboxRows(store, ids), before, 'oracle: no row changed')
      expectSame(await store.oracle.outboxCount(), ids.length, 'oracle: no row was added or deleted')
      expectEqual(await store.outbox.getCountByStatus(), counts, 'counts are unchanged')
    },
  }),
  defineCase({
    id: 'outbox.tx.batch-first-write-wins',
    title:
      "one id twice in one transaction's findOrCreateMany batch: one row, and both results are the first occurrence",
    skipReason: requiresTransactions,
    async run({ store }) {
      const results = await store.transaction((tx) =>
        store.outbox.findOrCreateMany(
          [
            outboxEvent('twin', { payload: 'first', headers: 'first-headers' }),
            outboxEvent('single'),
            outboxEvent('twin', { payload: 'second', subject: 'orders.other' }),
          ],
          { tx },
        ),
      )
      expectIds(results, ['twin', 'single', 'twin'], 'results in input order')
      expectSame(results[0]?.payload, 'first', 'the first occurrence is created')
      expectEqual(results[2], results[0], 'the second occurrence returns the first one, field by field')
      expectSame(await store.oracle.outboxCount(), 2, 'oracle: one row per id')
      const twin = await storedOutbox(store, 'twin')
      expectSame(twin.payload, 'first', 'oracle: the first payload is stored')
      expectSame(twin.subject, 'orders.created', 'oracle: the first subject is stored')
      expectSame(twin.headers, 'first-headers', 'oracle: the first headers are stored')
      expectSame(twin.status, 'pending', 'oracle: pending')
      expectSame(
        twin.enqueuedAt.getTime(),
        results[0]?.enqueuedAt.getTime(),
        'oracle: enqueuedAt as the batch returned it',
      )
    },
  }),
  defineCase({
    id: 'outbox.tx.repeat-first-write-wins',
    title:
      'one id enqueued by two findOrCreate calls in one transaction: the second returns the first, and the first is stored',
    skipReason: requiresTransactions,
    async run({ store, capabilities }) {
      const again = outboxEvent('twice', {
        payload: 'second',
        subject: 'orders.other',
        headers: 'second-headers',
      })
      if (capabilities.transactions === 'collector') {
        // A collector of actions (DynamoDB TransactWriteItems) cannot hold two actions on one
        // item: the second call must refuse with ValidationError, before touching the collector.
        await store.transaction(async (tx) => {
          await store.outbox.findOrCreate(outboxEvent('twice', { payload: 'first' }), { tx })
          await expectTxboxError(
            'ValidationError',
            () => store.outbox.findOrCreate(again, { tx }),
            'the second call',
          )
        })
      } else {
        const [first, second] = await store.transaction(async (tx) => {
          const a = await store.outbox.findOrCreate(outboxEvent('twice', { payload: 'first' }), { tx })
          return [a, await store.outbox.findOrCreate(again, { tx })] as const
        })
        expectSame(first.payload, 'first', 'the first call creates the event')
        expectEqual(second, first, 'the second call returns the first one, field by field')
      }
      expectSame(await store.oracle.outboxCount(), 1, 'oracle: one row')
      const stored = await storedOutbox(store, 'twice')
      expectSame(stored.payload, 'first', 'oracle: the first payload is stored')
      expectSame(stored.subject, 'orders.created', 'oracle: the first subject is stored')
      expectSame(stored.headers, undefined, 'oracle: the first (absent) headers are stored')
    },
  }),
  defineCase({
    id: 'outbox.fields.as-stored',
    title:
      'every outbox event an adapter returns (findOrCreate, get, findPending, claim, getFailedEvents) equals the stored row, field by field',
    async run({ store, clock }) {
      const o = store.outbox
      const lease = { leaseMs: MINUTE, workerId: 'w' }
      const t0 = clock.peekMs()
      await expectOutboxAsStored(store, await o.findOrCreate(outboxEvent('plain')), 'findOrCreate (new)')
      clock.advance(SECOND)
      await expectOutboxAsStored(
        store,
        await o.findOrCreate(outboxEvent('plain', { payload: 'ignored' })),
        'findOrCreate (stored)',
      )
      const batch = await o.findOrCreateMany([
        outboxEvent('headed', { headers: '{"trace":"t-1"}' }),
        outboxEvent('to-send'),
        outboxEvent('to-fail'),
        outboxEvent('to-retry'),
        outboxEvent('delayed', { availableAt: new Date(t0 + HOUR) }),
      ])
      for (const event of batch)
        await expectOutboxAsStored(store, event, `findOrCreateMany (${event.eventId})`)
      clock.advance(SECOND)
      for (const event of await o.findPending())
        await expectOutboxAsStored(store, event, `findPending (${event.eventId})`)
      for (const event of await o.claim({ limit: 10, ...lease }))
        await expectOutboxAsStored(store, event, `claim (${event.eventId})`)
      clock.advance(SECOND)
      await o.markAsSent('to-send', { workerId: 'w' })
      await o.markAsFailed('to-fail', 'poison', { workerId: 'w' })
      await o.retryLater('to-retry', { errorMessage: 'later', delayMs: SECOND, workerId: 'w' })
      for (const event of await o.getFailedEvents())
        await expectOutboxAsStored(store, event, `getFailedEvents (${event.eventId})`)
      for (const id of ['plain', 'headed', 'to-send', 'to-fail', 'to-retry', 'delayed'])
        await expectOutboxAsStored(store, await o.get(id), `get(${id})`)
      clock.set(t0 + HOUR)
      for (const event of await o.findPending())
        await expectOutboxAsStored(store, event, `findPending once retried or delayed (${event.eventId})`)
      // Reclaims of expired leases and of a retried event carry history (errorMessage, retryCount).
      const reclaimed = await o.claim({ limit: 10, leaseMs: MINUTE, workerId: 'w-2' })
      expectIds(
        reclaimed.map((event) => event.eventId).sort(),
        ['delayed', 'headed', 'plain', 'to-retry'],
        'the second claim takes the expired leases, the retried and the delayed event',
      )
      for (const event of reclaimed) await expectOutboxAsStored(store, event, `reclaim (${event.eventId})`)
      await o.requeueFailed(['to-fail'])
      await expectOutboxAsStored(store, await o.get('to-fail'), 'get once requeued')
    },
  }),
  defineCase({
    id: 'inbox.fields.as-stored',
    title:
      'every inbox event an adapter returns (findOrCreate, claim, get, getFailedEvents) equals the stored row, field by field',
    async run({ store, clock }) {
      const i = store.inbox
      const lease = { leaseMs: MINUTE, workerId: 'w' }
      const located = { stream: 'ORDERS', streamSeq: 41, headers: '{"trace":"t-1"}' }
      await expectInboxAsStored(
        store,
        await i.findOrCreate(inboxEvent('taken', located)),
        'findOrCreate (new)',
      )
      clock.advance(SECOND)
      await expectInboxAsStored(store, await i.findOrCreate(inboxEvent('taken')), 'findOrCreate (redelivery)')
      const claimed = await i.claim(inboxEvent('claimed', { ...located, streamSeq: 42 }), lease)
      await expectInboxAsStored(store, claimed.event, 'claim (new)')
      clock.advance(SECOND)
      const duplicate = await i.claim(inboxEvent('claimed'), { leaseMs: MINUTE, workerId: 'w-2' })
      await expectInboxAsStored(store, duplicate.event, 'claim (duplicate of a live claim)')
      await i.markAsFailed('taken', 'handler crashed')
      for (const event of await i.getFailedEvents())
        await expectInboxAsStored(store, event, `getFailedEvents (${event.eventId})`)
      await expectInboxAsStored(store, await i.get('taken'), 'get of a failed message')
      await expectInboxAsStored(store, await i.get('claimed'), 'get of a claimed message')
      clock.advance(SECOND)
      await i.markAsProcessed('claimed')
      await expectInboxAsStored(store, await i.get('claimed'), 'get of a processed message')
      const retaken = await i.claim(inboxEvent('taken'), { leaseMs: MINUTE, workerId: 'w-3' })
      await expectInboxAsStored(store, retaken.event, 'claim of a failed message')
      await expectInboxAsStored(
        store,
        (await i.claim(inboxEvent('claimed'), lease)).event,
        'claim of a processed message',
      )
      await expectInboxAsStored(
        store,
        await i.findOrCreate(inboxEvent('claimed')),
        'findOrCreate of a processed message',
      )
      clock.advance(2 * MINUTE)
      const takeover = await i.claim(inboxEvent('taken'), lease)
      await expectInboxAsStored(store, takeover.event, 'claim of an expired lease')
      await expectInboxAsStored(store, await i.get('taken'), 'get of a taken-over message')
    },
  }),
]
