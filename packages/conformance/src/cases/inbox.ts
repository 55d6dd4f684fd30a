import {
  expectEqual,
  expectNoLease,
  expectSame,
  expectTxboxError,
  storedInbox,
  storedOutbox,
} from '../assertions.js'
import { defineCase, requiresTransactions } from '../case.js'
import { FOLDED_PAIRS, inboxEvent, outboxEvent } from '../events.js'

const MINUTE = 60_000
const DAY = 86_400_000
const LEASE = { leaseMs: 60_000, workerId: 'inbox-worker' }
/** The fence cases: worker A's lease expires, worker B takes the message over. */
const A = 'worker-a'
const B = 'worker-b'
const SHORT = 1_000

export const inboxCases = [
  defineCase({
    id: 'inbox.dedupe.find-or-create',
    title: 'findOrCreate records a delivery once and counts every redelivery',
    async run({ store, clock }) {
      const t0 = clock.peekMs()
      const first = await store.inbox.findOrCreate(inboxEvent('msg-1', { payload: 'first', headers: 'h' }))
      expectSame(first.status, 'processing', 'a new message is processing')
      expectSame(first.deliveries, 1, 'first delivery')
      expectSame(first.receivedAt.getTime(), t0, 'receivedAt from the injected clock')
      clock.advance(1_000)
      const again = await store.inbox.findOrCreate(inboxEvent('msg-1', { payload: 'second' }))
      expectSame(again.deliveries, 2, 'the redelivery is counted')
      expectSame(again.payload, 'first', 'the stored payload is kept')
      expectSame(again.receivedAt.getTime(), t0, 'receivedAt is the first one')
      const stored = await storedInbox(store, 'msg-1')
      expectSame(stored.deliveries, 2, 'oracle: deliveries 2')
      expectSame(stored.headers, 'h', 'oracle: headers stored')
      expectSame(await store.oracle.inboxCount(), 1, 'oracle: one row')
    },
  }),
  defineCase({
    id: 'inbox.dedupe.concurrent-same-id',
    title: '20 concurrent claims of one new message: exactly one may process it, every delivery counted',
    async run({ store }) {
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, index) =>
          store.inbox.claim(inboxEvent('dup-1'), { leaseMs: 60_000, workerId: `w${index}` }),
        ),
      )
      const winners = results.filter((result) => result.shouldProcess)
      expectSame(winners.length, 1, 'exactly one caller processes the message')
      const stored = await storedInbox(store, 'dup-1')
      expectSame(stored.deliveries, 20, 'oracle: all 20 deliveries counted')
      expectSame(stored.status, 'processing', 'oracle: processing')
      expectSame(stored.claimedBy, winners[0]?.event.claimedBy, 'oracle: held by the one that processes it')
      await Promise.all(Array.from({ length: 20 }, () => store.inbox.findOrCreate(inboxEvent('dup-2'))))
      expectSame(
        (await storedInbox(store, 'dup-2')).deliveries,
        20,
        'oracle: 20 concurrent findOrCreate counted exactly',
      )
      expectSame(await store.oracle.inboxCount(), 2, 'oracle: two rows')
    },
  }),
  defineCase({
    id: 'inbox.dedupe.stream-seq',
    title:
      'the event id alone is the identity: a new id at a stored (stream, streamSeq) is a new event, a stored id at a new position a duplicate',
    async run({ store }) {
      // A JetStream stream deleted and re-created under its name restarts at sequence 1, so
      // a stored position under a new id is a new event that must be processed.
      expectSame(
        (await store.inbox.claim(inboxEvent('a', { stream: 'ORDERS', streamSeq: 7 }), LEASE)).shouldProcess,
        true,
        'the first event at ORDERS/7 is processed',
      )
      await store.inbox.markAsProcessed('a')
      const reused = await store.inbox.claim(inboxEvent('b', { stream: 'ORDERS', streamSeq: 7 }), LEASE)
      expectSame(reused.shouldProcess, true, 'claim: a new id at a stored position is a new event')
      expectSame(reused.event.eventId, 'b', 'claim: its own event is returned')
      expectSame(reused.event.deliveries, 1, 'claim: its first delivery')
      const created = await store.inbox.findOrCreate(inboxEvent('c', { stream: 'ORDERS', streamSeq: 7 }))
      expectSame(created.eventId, 'c', 'findOrCreate: a new id at a stored position is a new event')
      expectSame(created.deliveries, 1, 'findOrCreate: its first delivery')
      expectSame(created.status, 'processing', 'findOrCreate: processing')
      for (const id of ['b', 'c']) {
        const row = await storedInbox(store, id)
        expectSame(row.stream, 'ORDERS', `oracle: ${id} has its own row with its stream`)
        expectSame(row.streamSeq, 7, `oracle: ${id} records streamSeq 7`)
        expectSame(row.deliveries, 1, `oracle: ${id} delivered once`)
      }
      const first = await storedInbox(store, 'a')
      expectSame(first.deliveries, 1, 'oracle: the stored event is not counted for the new ids')
      expectSame(first.status, 'processed', 'oracle: the stored event stays processed')

      // A redelivery of a stored id is a duplicate wherever JetStream delivers it, even at a
      // position another event holds; the position recorded first is kept.
      await store.inbox.findOrCreate(inboxEvent('d', { stream: 'ORDERS', streamSeq: 8 }))
      const moved = await store.inbox.claim(inboxEvent('a', { stream: 'ORDERS', streamSeq: 8 }), LEASE)
      expectSame(moved.shouldProcess, false, 'claim: a processed id at a new position is a duplicate')
      expectSame(moved.event.eventId, 'a', 'claim: the stored event is returned')
      expectSame(moved.event.deliveries, 2, 'claim: the redelivery is counted')
      const again = await store.inbox.findOrCreate(inboxEvent('b', { stream: 'ORDERS', streamSeq: 12 }))
      expectSame(again.eventId, 'b', 'findOrCreate: the stored event is returned')
      expectSame(again.deliveries, 2, 'findOrCreate: the redelivery is counted')
      const movedRow = await storedInbox(store, 'a')
      expectSame(movedRow.deliveries, 2, 'oracle: a delivered twice')
      expectSame(movedRow.streamSeq, 7, 'oracle: a keeps the position recorded first')
      expectSame((await storedInbox(store, 'b')).streamSeq, 7, 'oracle: b keeps the position recorded first')
      expectSame((await storedInbox(store, 'd')).deliveries, 1, 'oracle: d is not counted for a')
      expectSame(
        (await store.inbox.claim(inboxEvent('e', { stream: 'OTHER', streamSeq: 7 }), LEASE)).shouldProcess,
        true,
        'other stream',
      )
      expectSame(await store.oracle.inboxCount(), 5, 'oracle: one row per id (a, b, c, d, e)')
    },
  }),
  defineCase({
    id: 'inbox.dedupe.folded-ids',
    title:
      'inbox ids, subjects and streams that differ only by case, Unicode normalization or ß/ss are different events, stored and looked up apart',
    async run({ store }) {
      for (const [index, pair] of FOLDED_PAIRS.entries()) {
        for (const [side, id] of pair.entries()) {
          const params = inboxEvent(id, {
            subject: `orders.${id}`,
            payload: `payload of ${id}`,
            stream: side === 0 ? 'ORDERS' : 'Orders',
            streamSeq: index + 1,
          })
          // The first of a pair through claim, the second through findOrCreate: both look up.
          const created =
            side === 0
              ? await store.inbox.claim(params, LEASE)
              : { event: await store.inbox.findOrCreate(params), shouldProcess: true }
          expectSame(created.shouldProcess, true, `claim(${JSON.stringify(id)}) is a new event`)
          expectSame(created.event.eventId, id, `${JSON.stringify(id)} returns its own event`)
          expectSame(created.event.deliveries, 1, `${JSON.stringify(id)}: first delivery`)
          expectSame(created.event.payload, `payload of ${id}`, `${JSON.stringify(id)} is a new event`)
        }
      }
      const ids = FOLDED_PAIRS.flat()
      expectSame(await store.oracle.inboxCount(), ids.length, 'oracle: one row per id')
      for (const [index, pair] of FOLDED_PAIRS.entries()) {
        for (const [side, id] of pair.entries()) {
          const row = await storedInbox(store, id)
          expectSame(row.eventId, id, `oracle: ${JSON.stringify(id)} stored as given`)
          expectSame(row.subject, `orders.${id}`, `oracle: the subject of ${JSON.stringify(id)} as given`)
          expectSame(row.payload, `payload of ${id}`, `oracle: ${JSON.stringify(id)} has its own payload`)
          expectSame(
            row.stream,
            side === 0 ? 'ORDERS' : 'Orders',
            `oracle: the stream of ${JSON.stringify(id)}`,
          )
          expectSame(row.streamSeq, index + 1, `oracle: the streamSeq of ${JSON.stringify(id)}`)
          expectSame(
            (await store.inbox.get(id))?.eventId,
            id,
            `get(${JSON.stringify(id)}) finds its own event`,
          )
        }
      }
      for (const [first] of FOLDED_PAIRS) await store.inbox.markAsProcessed(first)
      for (const [first, second] of FOLDED_PAIRS) {
        expectSame(await store.inbox.isProcessed(first), true, `${JSON.stringify(first)} is processed`)
        expectSame(
          await store.inbox.isProcessed(second),
          false,
          `processing ${JSON.stringify(first)} leaves ${JSON.stringify(second)} unprocessed`,
        )
        const again = await store.inbox.findOrCreate(inboxEvent(second))
        expectSame(again.eventId, second, `a redelivery of ${JSON.stringify(second)} finds its own event`)
        expectSame(again.deliveries, 2, `a redelivery of ${JSON.stringify(second)} is counted on it`)
        expectSame(
          (await storedInbox(store, first)).deliveries,
          1,
          `oracle: the redelivery of ${JSON.stringify(second)} is not counted on ${JSON.stringify(first)}`,
        )
      }
    },
  }),
  defineCase({
    id: 'inbox.claim.processed-is-final',
    title: 'a processed message is never processed again',
    async run({ store, clock }) {
      expectSame((await store.inbox.claim(inboxEvent('done'), LEASE)).shouldProcess, true, 'first claim')
      clock.advance(5)
      await store.inbox.markAsProcessed('done')
      const stored = await storedInbox(store, 'done')
      expectSame(stored.status, 'processed', 'oracle: processed')
      expectSame(stored.processedAt?.getTime(), clock.peekMs(), 'oracle: processedAt = now')
      expectNoLease(stored, 'oracle: processed')
      expectSame(await store.inbox.isProcessed('done'), true, 'isProcessed')
      expectSame(await store.inbox.isProcessed('unknown'), false, 'isProcessed of an unknown id')
      expectSame(
        (await store.inbox.claim(inboxEvent('done'), LEASE)).shouldProcess,
        false,
        'a redelivery is a duplicate',
      )
      clock.advance(DAY)
      expectSame(
        (await store.inbox.claim(inboxEvent('done'), LEASE)).shouldProcess,
        false,
        'still a duplicate a day later',
      )
    },
  }),
  defineCase({
    id: 'inbox.claim.failed-retries',
    title: 'a failed message may be claimed again; the new claim clears the error',
    async run({ store }) {
      await store.inbox.claim(inboxEvent('retry-me'), { leaseMs: 60_000, workerId: 'w1' })
      await store.inbox.markAsFailed('retry-me', 'handler crashed')
      const failed = await storedInbox(store, 'retry-me')
      expectSame(failed.status, 'failed', 'oracle: failed')
      expectSame(failed.errorMessage, 'handler crashed', 'oracle: errorMessage')
      expectNoLease(failed, 'oracle: failed')
      expectEqual(
        (await store.inbox.getFailedEvents()).map((event) => event.eventId),
        ['retry-me'],
        'listed as failed',
      )
      const again = await store.inbox.claim(inboxEvent('retry-me'), { leaseMs: 60_000, workerId: 'w2' })
      expectSame(again.shouldProcess, true, 'a failed message is processed again')
      const reclaimed = await storedInbox(store, 'retry-me')
      expectSame(reclaimed.status, 'processing', 'oracle: processing')
      expectSame(reclaimed.claimedBy, 'w2', 'oracle: held by w2')
      expectSame(reclaimed.errorMessage, undefined, 'oracle: the old error is cleared')
      expectSame(reclaimed.deliveries, 2, 'oracle: two deliveries')
    },
  }),
  defineCase({
    id: 'inbox.claim.expired-lease',
    title: 'a live lease makes redeliveries duplicates; an expired one lets another worker take over',
    async run({ store, clock }) {
      const t0 = clock.peekMs()
      await store.inbox.claim(inboxEvent('slow'), { leaseMs: 1_000, workerId: 'w1' })
      clock.advance(999)
      expectSame(
        (await store.inbox.claim(inboxEvent('slow'), { leaseMs: 1_000, workerId: 'w2' })).shouldProcess,
        false,
        'live lease',
      )
      clock.advance(1)
      const takeover = await store.inbox.claim(inboxEvent('slow'), { leaseMs: 1_000, workerId: 'w2' })
      expectSame(takeover.shouldProcess, true, 'expired at leaseUntil')
      const stored = await storedInbox(store, 'slow')
      expectSame(stored.claimedBy, 'w2', 'oracle: held by w2')
      expectSame(stored.claimedAt?.getTime(), t0 + 1_000, 'oracle: claimedAt = now')
      expectSame(stored.leaseUntil?.getTime(), t0 + 2_000, 'oracle: leaseUntil = now + leaseMs')
      await store.inbox.findOrCreate(inboxEvent('reference-flow'))
      clock.advance(DAY)
      const unleased = await store.inbox.claim(inboxEvent('reference-flow'), LEASE)
      expectSame(
        unleased.shouldProcess,
        false,
        'a message taken by findOrCreate has no lease to expire: only resetStale frees it',
      )
    },
  }),
  defineCase({
    id: 'inbox.tx.commit-visible',
    title: "markAsProcessed with { tx } commits together with the handler's writes",
    skipReason: requiresTransactions,
    async run({ store }) {
      await store.inbox.claim(inboxEvent('handled'), LEASE)
      await store.transaction(async (tx) => {
        await store.outbox.findOrCreate(outboxEvent('effect-1'), { tx })
        await store.inbox.markAsProcessed('handled', { tx })
      })
      expectSame((await storedInbox(store, 'handled')).status, 'processed', 'oracle: processed')
      await storedOutbox(store, 'effect-1')
    },
  }),
  defineCase({
    id: 'inbox.tx.rollback-invisible',
    title: "rolling back the handler's transaction leaves the message unprocessed",
    skipReason: requiresTransactions,
    async run({ store }) {
      await store.inbox.claim(inboxEvent('unhandled'), LEASE)
      await store.transaction(
        async (tx) => {
          await store.outbox.findOrCreate(outboxEvent('effect-2'), { tx })
          await store.inbox.markAsProcessed('unhandled', { tx })
        },
        { rollback: true },
      )
      expectSame((await storedInbox(store, 'unhandled')).status, 'processing', 'oracle: still processing')
      expectSame(await store.inbox.isProcessed('unhandled'), false, 'not processed')
      expectSame(await store.oracle.outbox('effect-2'), null, "oracle: the handler's write is gone too")
    },
  }),
  defineCase({
    id: 'inbox.cleanup.processed-only',
    title: 'inbox cleanup deletes processed messages older than the cutoff and nothing else',
    async run({ store, clock }) {
      const t0 = clock.peekMs()
      for (const id of ['old-done', 'new-done', 'stuck', 'failed'])
        await store.inbox.claim(inboxEvent(id), LEASE)
      await store.inbox.markAsProcessed('old-done')
      await store.inbox.markAsFailed('failed', 'x')
      clock.set(t0 + 2 * DAY)
      await store.inbox.markAsProcessed('new-done')
      clock.set(t0 + 3 * DAY)
      expectSame(await store.inbox.cleanup(2), 1, 'one processed message is older than 2 days')
      expectSame(await store.oracle.inbox('old-done'), null, 'oracle: deleted')
      for (const id of ['new-done', 'stuck', 'failed']) await storedInbox(store, id)
      expectSame(await store.inbox.cleanup(0.5), 1, 'fractional days')
      expectSame(await store.oracle.inboxCount(), 2, 'oracle: the unprocessed messages remain')
    },
  }),
  defineCase({
    id: 'inbox.reset-stale.claim-time',
    title: 'inbox resetStale fails messages whose claim (or receipt) is older than the cutoff',
    async run({ store, clock }) {
      const t0 = clock.peekMs()
      await store.inbox.claim(inboxEvent('reclaimed'), LEASE)
      await store.inbox.findOrCreate(inboxEvent('unclaimed'))
      await store.inbox.claim(inboxEvent('done'), LEASE)
      await store.inbox.markAsProcessed('done')
      clock.set(t0 + MINUTE)
      await store.inbox.markAsFailed('reclaimed', 'first try failed')
      clock.set(t0 + 50 * MINUTE)
      await store.inbox.claim(inboxEvent('stale'), LEASE)
      clock.set(t0 + 60 * MINUTE)
      await store.inbox.claim(inboxEvent('reclaimed'), LEASE)
      clock.set(t0 + 66 * MINUTE)
      expectSame(await store.inbox.resetStale(10), 2, 'the stale claim and the unclaimed message time out')
      const stale = await storedInbox(store, 'stale')
      expectSame(stale.status, 'failed', 'oracle: failed')
      expectSame(stale.errorMessage, 'Processing timeout', 'oracle: the timeout message')
      expectNoLease(stale, 'oracle: timed out')
      expectSame(
        (await storedInbox(store, 'unclaimed')).status,
        'failed',
        'oracle: receivedAt counts when never claimed',
      )
      expectSame(
        (await storedInbox(store, 'reclaimed')).status,
        'processing',
        'oracle: received long ago but claimed recently',
      )
      expectSame(
        (await storedInbox(store, 'done')).status,
        'processed',
        'oracle: processed messages are untouched',
      )
    },
  }),
  defineCase({
    id: 'inbox.cleanup.exact-cutoff',
    title:
      'inbox cleanup with fractional days deletes messages processed 1 ms before the cutoff and keeps those at or after it',
    async run({ store, clock }) {
      const now = clock.peekMs() + 2 * DAY
      const processed: [string, number][] = [
        ['before-1.5d', now - 1.5 * DAY - 1],
        ['at-1.5d', now - 1.5 * DAY],
        ['before-0.5d', now - 0.5 * DAY - 1],
        ['at-0.5d', now - 0.5 * DAY],
        ['after-0.5d', now - 0.5 * DAY + 1],
      ]
      for (const [id] of processed) await store.inbox.claim(inboxEvent(id), LEASE)
      for (const [id, processedAt] of processed) {
        clock.set(processedAt)
        await store.inbox.markAsProcessed(id)
        expectSame(
          (await storedInbox(store, id)).processedAt?.getTime(),
          processedAt,
          `oracle: ${id} processedAt`,
        )
      }
      clock.set(now)
      expectSame(
        await store.inbox.cleanup(1.5),
        1,
        'cleanup(1.5) deletes only the message processed 1 ms before now - 36 h',
      )
      expectSame(await store.oracle.inbox('before-1.5d'), null, 'oracle: before-1.5d deleted')
      expectSame(
        await store.oracle.inboxCount(),
        4,
        'oracle: the message processed exactly at the cutoff stays',
      )
      expectSame(
        await store.inbox.cleanup(0.5),
        2,
        'cleanup(0.5) deletes what was processed before now - 12 h',
      )
      for (const id of ['at-1.5d', 'before-0.5d'])
        expectSame(await store.oracle.inbox(id), null, `oracle: ${id} deleted`)
      for (const id of ['at-0.5d', 'after-0.5d']) await storedInbox(store, id)
      clock.advance(1)
      expectSame(await store.inbox.cleanup(0.5), 1, '1 ms later the message processed at the old cutoff goes')
      expectSame(await store.oracle.inbox('at-0.5d'), null, 'oracle: at-0.5d deleted')
      await storedInbox(store, 'after-0.5d')
    },
  }),
  defineCase({
    id: 'inbox.reset-stale.exact-cutoff',
    title:
      'inbox resetStale with fractional minutes fails claims (or receipts) 1 ms older than the cutoff and keeps those at or after it',
    async run({ store, clock }) {
      const now = clock.peekMs() + 10 * MINUTE
      // [id, claim time]: `received-*` are taken by findOrCreate, so their receipt counts.
      const claims: [string, number][] = [
        ['before-1.5m', now - 1.5 * MINUTE - 1],
        ['at-1.5m', now - 1.5 * MINUTE],
        ['received-at-1.5m', now - 1.5 * MINUTE],
        ['before-0.5m', now - 0.5 * MINUTE - 1],
        ['received-before-0.5m', now - 0.5 * MINUTE - 1],
        ['at-0.5m', now - 0.5 * MINUTE],
        ['after-0.5m', now - 0.5 * MINUTE + 1],
      ]
      for (const [id, claimedAt] of claims) {
        clock.set(claimedAt)
        if (id.startsWith('received-')) await store.inbox.findOrCreate(inboxEvent(id))
        else await store.inbox.claim(inboxEvent(id), { leaseMs: 3_600_000, workerId: `w-${id}` })
      }
      clock.set(now)
      expectSame(
        await store.inbox.resetStale(1.5),
        1,
        'resetStale(1.5) fails only the claim 1 ms before now - 90 s',
      )
      expectSame((await storedInbox(store, 'before-1.5m')).status, 'failed', 'oracle: before-1.5m timed out')
      for (const id of ['at-1.5m', 'received-at-1.5m'])
        expectSame(
          (await storedInbox(store, id)).status,
          'processing',
          `oracle: ${id} exactly at the cutoff stays`,
        )
      expectSame(
        await store.inbox.resetStale(0.5),
        4,
        'resetStale(0.5) fails everything taken before now - 30 s',
      )
      for (const id of ['at-1.5m', 'received-at-1.5m', 'before-0.5m', 'received-before-0.5m'])
        expectSame((await storedInbox(store, id)).status, 'failed', `oracle: ${id} timed out`)
      for (const id of ['at-0.5m', 'after-0.5m']) {
        const live = await storedInbox(store, id)
        expectSame(live.status, 'processing', `oracle: ${id} still processing`)
        expectSame(live.claimedBy, `w-${id}`, `oracle: ${id} still held`)
      }
      clock.advance(1)
      expectSame(await store.inbox.resetStale(0.5), 1, '1 ms later the claim at the old cutoff is stale')
      expectSame(
        (await storedInbox(store, 'after-0.5m')).status,
        'processing',
        'oracle: after-0.5m still processing',
      )
    },
  }),
  defineCase({
    id: 'inbox.counts.all-statuses',
    title: 'inbox getCountByStatus returns all three statuses, zeros included',
    async run({ store }) {
      expectEqual(
        await store.inbox.getCountByStatus(),
        { processing: 0, processed: 0, failed: 0 },
        'an empty inbox',
      )
      for (const id of ['i1', 'i2', 'i3', 'i4']) await store.inbox.claim(inboxEvent(id), LEASE)
      await store.inbox.markAsProcessed('i1')
      await store.inbox.markAsFailed('i2', 'x')
      expectEqual(await store.inbox.getCountByStatus(), { processing: 2, processed: 1, failed: 1 }, 'counts')
      expectSame(await store.oracle.inboxCount(), 4, 'oracle: four rows')
    },
  }),
  defineCase({
    id: 'inbox.fence.processed-after-takeover',
    title:
      "a worker whose message was taken over cannot mark it processed (LeaseLostError), and with { tx } its handler's writes roll back",
    async run({ store, clock, capabilities }) {
      await store.inbox.claim(inboxEvent('taken'), { leaseMs: SHORT, workerId: A })
      clock.advance(SHORT)
      expectSame(
        (await store.inbox.claim(inboxEvent('taken'), { leaseMs: SHORT, workerId: B })).shouldProcess,
        true,
        'B takes the expired lease over',
      )
      await expectTxboxError(
        'LeaseLostError',
        () => store.inbox.markAsProcessed('taken', { workerId: A }),
        "A's markAsProcessed while B holds the claim",
      )
      const heldByB = await storedInbox(store, 'taken')
      expectSame(heldByB.status, 'processing', "oracle: still processing, A's mark refused")
      expectSame(heldByB.claimedBy, B, 'oracle: still held by B')
      clock.advance(5)
      const processedAt = clock.peekMs()
      await store.inbox.markAsProcessed('taken', { workerId: B })
      clock.advance(5)
      await expectTxboxError(
        'LeaseLostError',
        () => store.inbox.markAsProcessed('taken', { workerId: A }),
        "A's markAsProcessed after B processed the message",
      )
      const processed = await storedInbox(store, 'taken')
      expectSame(processed.status, 'processed', "oracle: B's processed mark stays")
      expectSame(processed.processedAt?.getTime(), processedAt, "oracle: B's processedAt, not A's")
      expectNoLease(processed, 'oracle: processed')
      expectSame(
        (await store.inbox.claim(inboxEvent('taken'), { leaseMs: SHORT, workerId: A })).shouldProcess,
        false,
        'a redelivery is a duplicate',
      )
      if (capabilities.transactions === 'none') return
      // The duplicate effect itself: A's handler writes in its transaction, then its fenced
      // mark fails, so the transaction rolls back and the handler's write never commits.
      await store.inbox.claim(inboxEvent('taken-tx'), { leaseMs: SHORT, workerId: A })
      clock.advance(SHORT)
      await store.inbox.claim(inboxEvent('taken-tx'), { leaseMs: SHORT, workerId: B })
      await store.transaction(async (tx) => {
        await store.outbox.findOrCreate(outboxEvent('effect-of-b'), { tx })
        await store.inbox.markAsProcessed('taken-tx', { tx, workerId: B })
      })
      await expectTxboxError(
        'LeaseLostError',
        () =>
          store.transaction(async (tx) => {
            await store.outbox.findOrCreate(outboxEvent('effect-of-a'), { tx })
            await store.inbox.markAsProcessed('taken-tx', { tx, workerId: A })
          }),
        "A's markAsProcessed with { tx } after B processed the message",
      )
      expectSame(await store.oracle.outbox('effect-of-a'), null, "oracle: A's handler write rolled back")
      await storedOutbox(store, 'effect-of-b')
      const once = await storedInbox(store, 'taken-tx')
      expectSame(once.status, 'processed', 'oracle: processed once, by B')
    },
  }),
  defineCase({
    id: 'inbox.fence.failed-never-overwrites-processed',
    title:
      'markAsFailed never turns a processed message into a failed one: fenced it is LeaseLostError, unfenced it changes nothing',
    async run({ store, clock }) {
      await store.inbox.claim(inboxEvent('done-by-b'), { leaseMs: SHORT, workerId: A })
      clock.advance(SHORT)
      await store.inbox.claim(inboxEvent('done-by-b'), { leaseMs: SHORT, workerId: B })
      await expectTxboxError(
        'LeaseLostError',
        () => store.inbox.markAsFailed('done-by-b', 'A timed out', { workerId: A }),
        "A's markAsFailed while B holds the claim",
      )
      const heldByB = await storedInbox(store, 'done-by-b')
      expectSame(heldByB.status, 'processing', "oracle: still processing, A's mark refused")
      expectSame(heldByB.claimedBy, B, 'oracle: still held by B')
      expectSame(heldByB.errorMessage, undefined, 'oracle: no error message')
      await store.inbox.markAsProcessed('done-by-b', { workerId: B })
      await expectTxboxError(
        'LeaseLostError',
        () => store.inbox.markAsFailed('done-by-b', 'A failed late', { workerId: A }),
        "A's markAsFailed after B processed the message",
      )
      await expectTxboxError(
        'LeaseLostError',
        () => store.inbox.markAsFailed('done-by-b', 'B failed after processing', { workerId: B }),
        "B's own markAsFailed after it processed the message (it no longer holds a claim)",
      )
      await store.inbox.markAsFailed('done-by-b', 'an unfenced late failure')
      const processed = await storedInbox(store, 'done-by-b')
      expectSame(processed.status, 'processed', 'oracle: processed is final')
      expectSame(processed.errorMessage, undefined, 'oracle: no error message written')
      expectEqual(await store.inbox.getFailedEvents(), [], 'nothing listed as failed')
      expectEqual(
        await store.inbox.getCountByStatus(),
        { processing: 0, processed: 1, failed: 0 },
        'counts: one processed',
      )
      expectSame(
        (await store.inbox.claim(inboxEvent('done-by-b'), { leaseMs: SHORT, workerId: A })).shouldProcess,
        false,
        'a redelivery is a duplicate: the handler does not run again',
      )
      await expectTxboxError(
        'EventNotFoundError',
        () => store.inbox.markAsFailed('not-stored', 'x', { workerId: A }),
        'fenced markAsFailed of an unknown id',
      )
      await expectTxboxError(
        'EventNotFoundError',
        () => store.inbox.markAsProcessed('not-stored', { workerId: A }),
        'fenced markAsProcessed of an unknown id',
      )
      expectSame(await store.oracle.inbox('not-stored'), null, 'oracle: the unknown id is not created')
    },
  }),
  defineCase({
    id: 'inbox.fence.holder-marks',
    title:
      'the worker holding the claim marks the message processed or failed with its workerId (also after its lease expired, while nobody took it over)',
    async run({ store, clock, capabilities }) {
      await store.inbox.claim(inboxEvent('held'), { leaseMs: SHORT, workerId: A })
      clock.advance(5)
      await store.inbox.markAsProcessed('held', { workerId: A })
      const processed = await storedInbox(store, 'held')
      expectSame(processed.status, 'processed', 'oracle: processed by its holder')
      expectSame(processed.processedAt?.getTime(), clock.peekMs(), 'oracle: processedAt = now')
      expectNoLease(processed, 'oracle: processed')
      await expectTxboxError(
        'LeaseLostError',
        () => store.inbox.markAsProcessed('held', { workerId: A }),
        'a second fenced mark: the claim ended with the first',
      )
      await store.inbox.claim(inboxEvent('expired-held'), { leaseMs: SHORT, workerId: A })
      clock.advance(SHORT * 5)
      await store.inbox.markAsFailed('expired-held', 'handler crashed', { workerId: A })
      const failed = await storedInbox(store, 'expired-held')
      expectSame(failed.status, 'failed', 'oracle: an expired lease nobody took over is still held')
      expectSame(failed.errorMessage, 'handler crashed', 'oracle: errorMessage')
      expectNoLease(failed, 'oracle: failed')
      await store.inbox.claim(inboxEvent('bad-worker'), { leaseMs: SHORT, workerId: A })
      for (const [workerId, label] of [
        ['', 'an empty workerId'],
        [42, 'a workerId that is not a string'],
      ] as const) {
        await expectTxboxError(
          'ValidationError',
          () => store.inbox.markAsProcessed('bad-worker', { workerId: workerId as unknown as string }),
          `markAsProcessed with ${label}`,
        )
        await expectTxboxError(
          'ValidationError',
          () => store.inbox.markAsFailed('bad-worker', 'x', { workerId: workerId as unknown as string }),
          `markAsFailed with ${label}`,
        )
      }
      const untouched = await storedInbox(store, 'bad-worker')
      expectSame(untouched.status, 'processing', 'oracle: refused before any write')
      expectSame(untouched.claimedBy, A, 'oracle: still held by A')
      if (capabilities.transactions === 'none') return
      await store.inbox.claim(inboxEvent('held-tx'), { leaseMs: SHORT, workerId: A })
      await store.transaction(async (tx) => {
        await store.outbox.findOrCreate(outboxEvent('effect-of-holder'), { tx })
        await store.inbox.markAsProcessed('held-tx', { tx, workerId: A })
      })
      expectSame((await storedInbox(store, 'held-tx')).status, 'processed', 'oracle: processed with { tx }')
      await storedOutbox(store, 'effect-of-holder')
    },
  }),
]
