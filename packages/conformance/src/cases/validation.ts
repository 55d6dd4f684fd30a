import type { EnqueueParams, InboxParams } from '@txbox/core'
import { expectEqual, expectIds, expectSame, expectTxboxError, storedOutbox } from '../assertions.js'
import { defineCase } from '../case.js'
import { inboxEvent, outboxEvent } from '../events.js'

/** Bad input typed as the API's own types, as a caller without TypeScript would pass it. */
const bad = <T>(value: unknown): T => value as T
const LEASE = { leaseMs: 60_000, workerId: 'w' }

export const validationCases = [
  defineCase({
    id: 'outbox.validation.rejects-bad-input',
    title: 'every outbox input a caller can get wrong raises ValidationError and changes nothing',
    async run({ store }) {
      await store.outbox.findOrCreate(outboxEvent('keep'))
      const before = await storedOutbox(store, 'keep')
      const o = store.outbox
      const event = (overrides: Record<string, unknown>) =>
        bad<EnqueueParams>({ ...outboxEvent('new-event'), ...overrides })
      const rejected: [string, () => Promise<unknown>][] = [
        ['empty eventId', () => o.findOrCreate(event({ eventId: '' }))],
        ['eventId of 256 characters', () => o.findOrCreate(event({ eventId: 'x'.repeat(256) }))],
        ['numeric eventId', () => o.findOrCreate(event({ eventId: 42 }))],
        ['missing eventId', () => o.findOrCreate(event({ eventId: undefined }))],
        ['eventId with a lone surrogate', () => o.findOrCreate(event({ eventId: 'a\uD800' }))],
        ['empty subject', () => o.findOrCreate(event({ subject: '' }))],
        ['subject with a space', () => o.findOrCreate(event({ subject: 'orders created' }))],
        ['subject with a tab', () => o.findOrCreate(event({ subject: 'orders\tcreated' }))],
        ['subject of 501 characters', () => o.findOrCreate(event({ subject: 's'.repeat(501) }))],
        ['numeric payload', () => o.findOrCreate(event({ payload: 42 }))],
        ['object payload', () => o.findOrCreate(event({ payload: { a: 1 } }))],
        ['null payload', () => o.findOrCreate(event({ payload: null }))],
        ['payload with a lone surrogate', () => o.findOrCreate(event({ payload: 'broken \uDC00 text' }))],
        ['numeric headers', () => o.findOrCreate(event({ headers: 7 }))],
        ['null headers', () => o.findOrCreate(event({ headers: null }))],
        ['availableAt as a string', () => o.findOrCreate(event({ availableAt: '2026-01-01' }))],
        ['invalid availableAt', () => o.findOrCreate(event({ availableAt: new Date(Number.NaN) }))],
        ['params not an object', () => o.findOrCreate(bad('new-event'))],
        ['findOrCreateMany of a non-array', () => o.findOrCreateMany(bad(outboxEvent('new-event')))],
        [
          'findOrCreateMany with one bad event',
          () => o.findOrCreateMany([outboxEvent('new-event'), event({ subject: '' })]),
        ],
        ['limit 0', () => o.findPending({ limit: 0 })],
        ['limit 10001', () => o.findPending({ limit: 10_001 })],
        ['fractional limit', () => o.findPending({ limit: 1.5 })],
        ['string limit', () => o.findPending({ limit: bad('10') })],
        ['claim with leaseMs 0', () => o.claim({ limit: 1, leaseMs: 0, workerId: 'w' })],
        ['claim with negative leaseMs', () => o.claim({ limit: 1, leaseMs: -5, workerId: 'w' })],
        ['claim with fractional leaseMs', () => o.claim({ limit: 1, leaseMs: 1.5, workerId: 'w' })],
        ['claim with empty workerId', () => o.claim({ limit: 1, leaseMs: 1_000, workerId: '' })],
        ['claim with limit 0', () => o.claim({ limit: 0, leaseMs: 1_000, workerId: 'w' })],
        ['cleanup(-1)', () => o.cleanup(-1)],
        ['cleanup(NaN)', () => o.cleanup(Number.NaN)],
        ['cleanup(Infinity)', () => o.cleanup(Number.POSITIVE_INFINITY)],
        ["cleanup('1')", () => o.cleanup(bad('1'))],
        ['resetStale(-1)', () => o.resetStale(-1)],
        ['resetStale(NaN)', () => o.resetStale(Number.NaN)],
        ["markAsSent('')", () => o.markAsSent('')],
        ['markAsSent with an empty workerId', () => o.markAsSent('keep', { workerId: '' })],
        ['markAsFailed with a numeric message', () => o.markAsFailed('keep', bad(500))],
        ['retryLater with a negative delay', () => o.retryLater('keep', { errorMessage: 'x', delayMs: -1 })],
        [
          'retryLater with a fractional delay',
          () => o.retryLater('keep', { errorMessage: 'x', delayMs: 0.5 }),
        ],
        ['renewLease with leaseMs 0', () => o.renewLease(['keep'], { workerId: 'w', leaseMs: 0 })],
        ['renewLease of a non-array', () => o.renewLease(bad('keep'), { workerId: 'w', leaseMs: 10 })],
        ['markManyAsSent with a bad id', () => o.markManyAsSent(['keep', ''])],
        ['getFailedEvents(0)', () => o.getFailedEvents(0)],
        ['requeueFailed of a string', () => o.requeueFailed(bad('keep'))],
        ["get('')", () => o.get('')],
      ]
      for (const [label, action] of rejected) await expectTxboxError('ValidationError', action, label)
      expectSame(await store.oracle.outboxCount(), 1, 'oracle: no bad input stored anything')
      expectEqual(await storedOutbox(store, 'keep'), before, 'oracle: the stored event is unchanged')
      const longest = await o.findOrCreate(outboxEvent('x'.repeat(255), { subject: 's'.repeat(500) }))
      expectSame(
        longest.eventId.length,
        255,
        'an eventId of 255 characters and a subject of 500 are accepted',
      )
      expectIds(await o.findPending({ limit: 10_000 }), ['keep', 'x'.repeat(255)], 'limit 10000 is accepted')
      expectSame(await o.cleanup(0), 0, 'olderThanDays 0 is accepted')
      expectSame(await o.resetStale(0.25), 0, 'fractional minutes are accepted')
    },
  }),
  defineCase({
    id: 'outbox.validation.not-found',
    title: 'writes to an unknown outbox id raise EventNotFoundError instead of doing nothing',
    async run({ store }) {
      const o = store.outbox
      await expectTxboxError('EventNotFoundError', () => o.markAsPublishing('nope'), 'markAsPublishing')
      await expectTxboxError('EventNotFoundError', () => o.markAsSent('nope'), 'markAsSent')
      await expectTxboxError(
        'EventNotFoundError',
        () => o.markAsSent('nope', { workerId: 'w' }),
        'markAsSent with workerId',
      )
      await expectTxboxError('EventNotFoundError', () => o.markAsFailed('nope', 'x'), 'markAsFailed')
      await expectTxboxError(
        'EventNotFoundError',
        () => o.retryLater('nope', { errorMessage: 'x', delayMs: 0 }),
        'retryLater',
      )
      await expectTxboxError('EventNotFoundError', () => o.requeueFailed(['nope']), 'requeueFailed')
      expectSame(await o.get('nope'), null, 'get of an unknown id is null')
      expectIds(
        await o.markManyAsSent(['nope']),
        ['nope'],
        'markManyAsSent reports the unknown id as not applied',
      )
      expectSame(await store.oracle.outboxCount(), 0, 'oracle: nothing was created')
    },
  }),
  defineCase({
    id: 'inbox.validation.rejects-bad-input',
    title: 'every inbox input a caller can get wrong raises ValidationError and changes nothing',
    async run({ store }) {
      const i = store.inbox
      const message = (overrides: Record<string, unknown>) =>
        bad<InboxParams>({ ...inboxEvent('new-msg'), ...overrides })
      const rejected: [string, () => Promise<unknown>][] = [
        ['empty eventId', () => i.findOrCreate(message({ eventId: '' }))],
        ['subject with whitespace', () => i.claim(message({ subject: 'a b' }), LEASE)],
        ['numeric payload', () => i.findOrCreate(message({ payload: 1 }))],
        ['stream without streamSeq', () => i.findOrCreate(message({ stream: 'ORDERS' }))],
        ['streamSeq without stream', () => i.findOrCreate(message({ streamSeq: 3 }))],
        ['streamSeq 0', () => i.findOrCreate(message({ stream: 'ORDERS', streamSeq: 0 }))],
        ['fractional streamSeq', () => i.findOrCreate(message({ stream: 'ORDERS', streamSeq: 1.5 }))],
        ['empty stream', () => i.findOrCreate(message({ stream: '', streamSeq: 1 }))],
        ['claim with leaseMs 0', () => i.claim(inboxEvent('new-msg'), { leaseMs: 0, workerId: 'w' })],
        ['claim with empty workerId', () => i.claim(inboxEvent('new-msg'), { leaseMs: 10, workerId: '' })],
        ['cleanup(-1)', () => i.cleanup(-1)],
        ['resetStale(Infinity)', () => i.resetStale(Number.POSITIVE_INFINITY)],
        ["markAsProcessed('')", () => i.markAsProcessed('')],
        ['markAsFailed with a numeric message', () => i.markAsFailed('new-msg', bad(1))],
        ['getFailedEvents(10001)', () => i.getFailedEvents(10_001)],
      ]
      for (const [label, action] of rejected) await expectTxboxError('ValidationError', action, label)
      expectSame(await store.oracle.inboxCount(), 0, 'oracle: no bad input stored anything')
      await expectTxboxError(
        'EventNotFoundError',
        () => i.markAsProcessed('nope'),
        'markAsProcessed of an unknown id',
      )
      await expectTxboxError(
        'EventNotFoundError',
        () => i.markAsFailed('nope', 'x'),
        'inbox markAsFailed of an unknown id',
      )
      expectSame(await i.get('nope'), null, 'inbox get of an unknown id is null')
      expectSame(await store.oracle.inboxCount(), 0, 'oracle: still nothing stored')
    },
  }),
]
