import type { EnqueueParams, InboxParams } from '@txbox/core'
import { expectEqual, expectIds, expectSame, storedInbox, storedOutbox } from '../assertions.js'
import { type CaseContext, defineCase, requiresTransactions, skipCase } from '../case.js'
import { inboxEvent, outboxEvent } from '../events.js'
import type { ConformancePeer } from '../target.js'

/**
 * More rules of issue 19, point 9 that no other case checks: what a caller reads in a
 * validation message, what a driver failure surfaces as, and what inbox cleanup leaves behind;
 * and the rest of hole 2: events that commit in another order than they were enqueued.
 */

const DAY = 86_400_000

/** Bad input typed as the API's own types, as a caller without TypeScript would pass it. */
const bad = <T>(value: unknown): T => value as T

/** Escapes a field name for a regular expression (`params[0]`, `eventIds[1]`). */
const literal = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/**
 * Calls that a ValidationError must refuse, with the side and the field its message must name.
 * The field is matched as the subject of the sentence, right after `<side>: ` (or after an
 * enclosing name such as `params[0].`), so `eventId` in a quoted value does not count.
 */
type MessageProbe = readonly [
  side: 'outbox' | 'inbox',
  label: string,
  field: string,
  call: () => Promise<unknown>,
]

/** Each probe's message must read `[txbox] [<adapter>] <side>: <field> ...`. */
const expectSideAndField = async (probes: readonly MessageProbe[]): Promise<void> => {
  for (const [side, label, field, call] of probes) {
    const message = await validationMessage(call)
    const expected = new RegExp(
      `^\\[txbox\\] \\[[^\\]]+\\] ${side}: (?:[\\w\\[\\]]+\\.)?${literal(field)}\\b`,
    )
    expectSame(
      message !== undefined && expected.test(message),
      true,
      `${side}.${label}: the message must read "[txbox] [<adapter>] ${side}: ${field} ..."; got ${message ?? 'no ValidationError'}`,
    )
  }
}

const LEASE = { leaseMs: 60_000, workerId: 'w' }

export const ruleCases2 = [
  defineCase({
    id: 'outbox.validation.names-side-and-field',
    title:
      'an outbox validation message names, after the [txbox] [<adapter>] prefix, the outbox and the offending field',
    async run({ store }) {
      const o = store.outbox
      const params = (overrides: Record<string, unknown>) =>
        bad<EnqueueParams>({ ...outboxEvent('o-1'), ...overrides })
      await expectSideAndField([
        [
          'outbox',
          'findOrCreate with an empty eventId',
          'eventId',
          () => o.findOrCreate(params({ eventId: '' })),
        ],
        [
          'outbox',
          'findOrCreate with an empty subject',
          'subject',
          () => o.findOrCreate(params({ subject: '' })),
        ],
        [
          'outbox',
          'findOrCreate with a numeric payload',
          'payload',
          () => o.findOrCreate(params({ payload: 1 })),
        ],
        [
          'outbox',
          'findOrCreate with numeric headers',
          'headers',
          () => o.findOrCreate(params({ headers: 1 })),
        ],
        [
          'outbox',
          'findOrCreate with a string availableAt',
          'availableAt',
          () => o.findOrCreate(params({ availableAt: '2026-01-01' })),
        ],
        ['outbox', 'get with a numeric id', 'eventId', () => o.get(bad(7))],
        ['outbox', 'markAsSent with an empty id', 'eventId', () => o.markAsSent('')],
        [
          'outbox',
          'markAsFailed with a numeric errorMessage',
          'errorMessage',
          () => o.markAsFailed('o-1', bad(5)),
        ],
        ['outbox', 'claim with limit 0', 'limit', () => o.claim({ ...LEASE, limit: 0 })],
        ['outbox', 'claim with leaseMs 0', 'leaseMs', () => o.claim({ ...LEASE, leaseMs: 0 })],
        ['outbox', 'claim with an empty workerId', 'workerId', () => o.claim({ ...LEASE, workerId: '' })],
        [
          'outbox',
          'retryLater with a negative delayMs',
          'delayMs',
          () => o.retryLater('o-1', { errorMessage: 'x', delayMs: -1 }),
        ],
        ['outbox', 'cleanup with a negative age', 'olderThanDays', () => o.cleanup(-1)],
        ['outbox', 'resetStale with NaN', 'staleMinutes', () => o.resetStale(Number.NaN)],
        ['outbox', 'requeueFailed of a non-array', 'eventIds', () => o.requeueFailed(bad('o-1'))],
      ])
    },
  }),
  defineCase({
    id: 'inbox.validation.names-side-and-field',
    title:
      'an inbox validation message names, after the [txbox] [<adapter>] prefix, the inbox and the offending field',
    async run({ store }) {
      const i = store.inbox
      const params = (overrides: Record<string, unknown>) =>
        bad<InboxParams>({ ...inboxEvent('i-1'), ...overrides })
      await expectSideAndField([
        [
          'inbox',
          'findOrCreate with an empty eventId',
          'eventId',
          () => i.findOrCreate(params({ eventId: '' })),
        ],
        [
          'inbox',
          'findOrCreate with an empty subject',
          'subject',
          () => i.findOrCreate(params({ subject: '' })),
        ],
        [
          'inbox',
          'findOrCreate with a numeric payload',
          'payload',
          () => i.findOrCreate(params({ payload: 1 })),
        ],
        [
          'inbox',
          'findOrCreate with streamSeq 0',
          'streamSeq',
          () => i.findOrCreate(params({ stream: 's', streamSeq: 0 })),
        ],
        ['inbox', 'claim with leaseMs 0', 'leaseMs', () => i.claim(params({}), { ...LEASE, leaseMs: 0 })],
        [
          'inbox',
          'claim with an empty workerId',
          'workerId',
          () => i.claim(params({}), { ...LEASE, workerId: '' }),
        ],
        ['inbox', 'get with a numeric id', 'eventId', () => i.get(bad(7))],
        ['inbox', 'markAsProcessed with an empty id', 'eventId', () => i.markAsProcessed('')],
        [
          'inbox',
          'markAsFailed with a numeric errorMessage',
          'errorMessage',
          () => i.markAsFailed('i-1', bad(5)),
        ],
        ['inbox', 'cleanup with a negative age', 'olderThanDays', () => i.cleanup(-1)],
        ['inbox', 'resetStale with NaN', 'staleMinutes', () => i.resetStale(Number.NaN)],
        ['inbox', 'getFailedEvents with limit 0', 'limit', () => i.getFailedEvents(0)],
      ])
    },
  }),
  defineCase({
    id: 'inbox.cleanup.failed-kept',
    title:
      'inbox cleanup deletes processed messages only: a dead letter as old stays, and a processed message stays processed (a late markAsFailed changes nothing) until cleanup deletes it',
    async run({ store, clock }) {
      const lease = { leaseMs: 60_000, workerId: 'w' }
      for (const id of ['done', 'refailed', 'dead']) await store.inbox.claim(inboxEvent(id), lease)
      for (const id of ['done', 'refailed']) await store.inbox.markAsProcessed(id)
      await store.inbox.markAsFailed('dead', 'handler failed')
      // Processed is final (§3): a late failure report of a processed message changes nothing.
      await store.inbox.markAsFailed('refailed', 'a late failure of a superseded attempt')
      expectSame((await storedInbox(store, 'refailed')).status, 'processed', 'oracle: still processed')
      const before = await storedInbox(store, 'dead')
      clock.advance(2 * 86_400_000)
      expectSame(await store.inbox.cleanup(1), 2, 'cleanup deletes the processed messages only')
      expectSame(await store.oracle.inbox('done'), null, 'oracle: the processed message is gone')
      expectSame(
        await store.oracle.inbox('refailed'),
        null,
        'oracle: the late-failed processed message is gone',
      )
      expectEqual(await storedInbox(store, 'dead'), before, 'oracle: the failed message is untouched')
      expectIds(await store.inbox.getFailedEvents(), ['dead'], 'the dead letter is still listed')
    },
  }),
  defineCase({
    id: 'inbox.cleanup.no-trace',
    title:
      'inbox cleanup leaves no trace of a deleted message: the same id received again is a new message, and no count or listing shows the old one',
    async run({ store, clock }) {
      const t0 = clock.peekMs()
      const lease = { leaseMs: 60_000, workerId: 'w' }
      // One message processed at once, one that failed first (so it was listed as failed),
      // both received twice: a dedupe record, a failed index or a counter that cleanup
      // forgets would show in what follows.
      const done = inboxEvent('done', { stream: 'ORDERS', streamSeq: 7 })
      const retried = inboxEvent('retried', { stream: 'ORDERS', streamSeq: 8 })
      await store.inbox.claim(done, lease)
      await store.inbox.findOrCreate(done)
      await store.inbox.markAsProcessed('done')
      await store.inbox.claim(retried, lease)
      await store.inbox.markAsFailed('retried', 'first try failed')
      await store.inbox.claim(retried, lease)
      await store.inbox.markAsProcessed('retried')
      clock.set(t0 + 2 * DAY)
      expectSame(await store.inbox.cleanup(1), 2, 'both processed messages are older than a day')
      expectSame(await store.oracle.inboxCount(), 0, 'oracle: nothing stored after cleanup')
      expectSame(await store.inbox.get('done'), null, 'get: the deleted message is gone')
      expectSame(
        await store.inbox.isProcessed('done'),
        false,
        'isProcessed: the deleted message is not known',
      )
      expectEqual(
        await store.inbox.getCountByStatus(),
        { processing: 0, processed: 0, failed: 0 },
        'counts after cleanup: no ghost',
      )
      expectIds(await store.inbox.getFailedEvents(), [], 'failed listing after cleanup: no ghost')

      clock.set(t0 + 3 * DAY)
      const again = await store.inbox.claim(done, lease)
      expectSame(again.shouldProcess, true, 'the same id received again is processed again')
      expectSame(again.event.deliveries, 1, 'a new message: its first delivery')
      expectSame(again.event.receivedAt.getTime(), t0 + 3 * DAY, 'a new message: received now')
      const recreated = await store.inbox.findOrCreate(retried)
      expectSame(recreated.deliveries, 1, 'findOrCreate of a deleted id: its first delivery')
      expectSame(recreated.status, 'processing', 'findOrCreate of a deleted id: processing')
      expectSame(recreated.errorMessage, undefined, 'findOrCreate of a deleted id: no old errorMessage')
      // A different id at a deleted message's stream position is its own message too.
      const other = await store.inbox.findOrCreate(inboxEvent('other', { stream: 'ORDERS', streamSeq: 7 }))
      expectSame(other.eventId, 'other', 'another id at a deleted position is its own message')
      expectSame(other.deliveries, 1, 'another id at a deleted position: its first delivery')
      for (const id of ['done', 'retried', 'other']) {
        const row = await storedInbox(store, id)
        expectSame(row.deliveries, 1, `oracle: ${id} stored with one delivery`)
        expectSame(row.status, 'processing', `oracle: ${id} processing`)
        expectSame(row.processedAt, undefined, `oracle: ${id} has no processedAt`)
      }
      expectEqual(
        await store.inbox.getCountByStatus(),
        { processing: 3, processed: 0, failed: 0 },
        'counts: the three new messages only',
      )
      expectIds(await store.inbox.getFailedEvents(), [], 'failed listing: still none')
    },
  }),
  defineCase({
    id: 'outbox.tx.commit-order',
    title:
      'events enqueued in transactions that commit in another order are all claimed: one committed behind an event already claimed is not skipped',
    skipReason: requiresTransactions,
    async run({ store, capabilities }) {
      const lease = { leaseMs: 60_000, workerId: 'w', limit: 10 }
      await store.outbox.findOrCreate(outboxEvent('before'))
      expectIds(await store.outbox.claim(lease), ['before'], 'the event enqueued before both transactions')
      // A enqueues first and commits last. A store that claims past a cursor (a sequence
      // taken at insert, read as "greater than the last claimed") passes over A's event.
      let secondOpened = false
      await store.transaction(async (first) => {
        await store.outbox.findOrCreate(outboxEvent('enqueued-first'), { tx: first })
        try {
          await store.transaction(async (second) => {
            secondOpened = true
            await store.outbox.findOrCreate(outboxEvent('enqueued-second'), { tx: second })
          })
        } catch (error) {
          // A single-writer database (SQLite) cannot open a second write transaction while
          // one is open, so its events always commit in enqueue order: then the second is
          // enqueued after the first commits, below.
          if (secondOpened || capabilities.claim !== 'single-writer') throw error
        }
        if (secondOpened) {
          expectIds(
            await store.outbox.claim(lease),
            ['enqueued-second'],
            'a claim between the commits: only the committed event',
          )
        }
      })
      if (!secondOpened) await store.outbox.findOrCreate(outboxEvent('enqueued-second'))
      expectIds(
        await store.outbox.claim(lease),
        secondOpened ? ['enqueued-first'] : ['enqueued-first', 'enqueued-second'],
        'a claim after the last commit: the event committed behind the claimed one',
      )
      for (const id of ['before', 'enqueued-first', 'enqueued-second'])
        expectSame((await storedOutbox(store, id)).status, 'publishing', `oracle: ${id} claimed`)
      expectIds(await store.outbox.claim(lease), [], 'nothing left')
    },
  }),
  defineCase({
    id: 'outbox.tx.claim-while-open',
    title:
      "a claim while a caller's transaction is open never takes that transaction's uncommitted events, and its rollback never undoes the claim; a store that cannot tell them apart refuses with ValidationError",
    skipReason: requiresTransactions,
    async run({ store }) {
      const lease = { leaseMs: 60_000, workerId: 'relay', limit: 10 }
      await store.outbox.findOrCreate(outboxEvent('committed'))
      let refused = false
      await store.transaction(
        async (tx) => {
          await store.outbox.findOrCreate(outboxEvent('uncommitted'), { tx })
          let claimed: readonly { eventId: string }[] = []
          try {
            claimed = await store.outbox.claim(lease)
          } catch (error) {
            const e = error as { name?: unknown; code?: unknown; message?: unknown }
            if (e?.name !== 'ValidationError' || e.code !== 'VALIDATION') throw error
            // SQLite: the caller's transaction is open on the store's own connection.
            refused = true
          }
          if (!refused) expectIds(claimed, ['committed'], 'the claim takes only committed events')
        },
        { rollback: true },
      )
      expectSame(
        await store.oracle.outbox('uncommitted'),
        null,
        'oracle: the rolled-back event is not stored',
      )
      const committed = await storedOutbox(store, 'committed')
      if (refused) {
        expectSame(committed.status, 'pending', 'oracle: a refused claim changed nothing')
        expectIds(
          await store.outbox.claim(lease),
          ['committed'],
          'a claim after the transaction takes the event',
        )
      } else {
        expectSame(committed.status, 'publishing', "oracle: the caller's rollback did not undo the claim")
        expectSame(committed.claimedBy, 'relay', 'oracle: the claim keeps its worker')
        expectIds(await store.outbox.claim(lease), [], 'nothing left to claim: the lease holds')
      }
    },
  }),
  defineCase({
    id: 'outbox.errors.driver-failure',
    title:
      "an outbox call whose driver fails (closed connection) throws StorageError with the driver's error as cause",
    async run(context) {
      const { store } = context
      await store.outbox.findOrCreate(outboxEvent('keep'))
      const peer = await brokenPeer(context)
      const o = peer.outbox
      const lease = { leaseMs: 60_000, workerId: 'w' }
      await expectDriverFailures([
        ['findOrCreate', () => o.findOrCreate(outboxEvent('new'))],
        ['findOrCreateMany', () => o.findOrCreateMany([outboxEvent('new-1'), outboxEvent('new-2')])],
        ['get', () => o.get('keep')],
        ['findPending', () => o.findPending()],
        ['claim', () => o.claim({ ...lease, limit: 10 })],
        ['markAsPublishing', () => o.markAsPublishing('keep')],
        ['markAsSent', () => o.markAsSent('keep')],
        ['markManyAsSent', () => o.markManyAsSent(['keep'])],
        ['markAsFailed', () => o.markAsFailed('keep', 'x')],
        ['retryLater', () => o.retryLater('keep', { errorMessage: 'x', delayMs: 1000 })],
        ['renewLease', () => o.renewLease(['keep'], lease)],
        ['requeueFailed', () => o.requeueFailed(['keep'])],
        ['getFailedEvents', () => o.getFailedEvents()],
        ['getCountByStatus', () => o.getCountByStatus()],
        ['cleanup', () => o.cleanup(1)],
        ['resetStale', () => o.resetStale(1)],
      ])
      expectSame(await store.oracle.outboxCount(), 1, 'oracle: the failed calls stored nothing')
      expectSame(
        (await storedOutbox(store, 'keep')).status,
        'pending',
        'oracle: the stored event is untouched',
      )
    },
  }),
  defineCase({
    id: 'inbox.errors.driver-failure',
    title:
      "an inbox call whose driver fails (closed connection) throws StorageError with the driver's error as cause",
    async run(context) {
      const { store } = context
      await store.inbox.findOrCreate(inboxEvent('keep'))
      const peer = await brokenPeer(context)
      const i = peer.inbox
      await expectDriverFailures([
        ['findOrCreate', () => i.findOrCreate(inboxEvent('new'))],
        ['claim', () => i.claim(inboxEvent('new'), { leaseMs: 60_000, workerId: 'w' })],
        ['get', () => i.get('keep')],
        ['markAsProcessed', () => i.markAsProcessed('keep')],
        ['markAsFailed', () => i.markAsFailed('keep', 'x')],
        ['isProcessed', () => i.isProcessed('keep')],
        ['getFailedEvents', () => i.getFailedEvents()],
        ['getCountByStatus', () => i.getCountByStatus()],
        ['cleanup', () => i.cleanup(1)],
        ['resetStale', () => i.resetStale(1)],
      ])
      expectSame(await store.oracle.inboxCount(), 1, 'oracle: the failed calls stored nothing')
      const kept = await storedInbox(store, 'keep')
      expectSame(kept.status, 'processing', 'oracle: the stored message is untouched')
      expectSame(kept.deliveries, 1, 'oracle: no delivery counted')
    },
  }),
]

/** Why the driver-failure cases skip a target. */
export const NO_BREAK_REASON =
  "the target's peer() offers no breakConnection() (a store without a driver, or a target that cannot close one)"

/** A peer on the fixture's namespace whose connection is already broken, or a skipped case. */
const brokenPeer = async (context: CaseContext): Promise<ConformancePeer> => {
  const peer = await context.openPeer()
  if (peer?.breakConnection === undefined) return skipCase(NO_BREAK_REASON)
  await peer.breakConnection()
  return peer
}

const TXBOX_ERROR_NAMES = new Set([
  'TxboxError',
  'ValidationError',
  'EventNotFoundError',
  'LeaseLostError',
  'PayloadTooLargeError',
  'StorageError',
])

/** Each call must reject with a StorageError whose `cause` is the driver's own error. */
const expectDriverFailures = async (
  calls: readonly (readonly [method: string, call: () => Promise<unknown>])[],
): Promise<void> => {
  for (const [method, call] of calls) {
    let outcome: string
    try {
      await call()
      outcome = 'it resolved'
    } catch (error) {
      const e = error as { name?: unknown; code?: unknown; message?: unknown; cause?: unknown }
      const cause = e?.cause as { name?: unknown; message?: unknown } | undefined
      if (e?.name !== 'StorageError' || e.code !== 'STORAGE')
        outcome = `it threw ${String(e?.name)}: ${String(e?.message ?? error)}`
      else if (typeof e.message !== 'string' || !/^\[txbox\] \[[^\]]+\] /.test(e.message))
        outcome = `its message lacks the [txbox] [<adapter>] prefix: ${String(e.message)}`
      else if (cause === undefined || cause === null) outcome = `its StorageError has no cause: ${e.message}`
      else if (TXBOX_ERROR_NAMES.has(String(cause.name)))
        outcome = `its cause is a txbox error, not the driver's: ${String(cause.name)}: ${String(cause.message)}`
      else outcome = 'ok'
    }
    expectSame(
      outcome,
      'ok',
      `${method} after the connection broke must throw StorageError with the driver's error as cause`,
    )
  }
}

/** The message of the ValidationError `call` rejects with, or undefined when it does not. */
const validationMessage = async (call: () => Promise<unknown>): Promise<string | undefined> => {
  try {
    await call()
  } catch (error) {
    const e = error as { name?: unknown; code?: unknown; message?: unknown }
    if (e?.name === 'ValidationError' && e.code === 'VALIDATION' && typeof e.message === 'string')
      return e.message
    return `${String(e?.name)}: ${String(e?.message ?? error)}`
  }
  return undefined
}
