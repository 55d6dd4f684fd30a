import type { EnqueueParams, InboxParams } from '@txbox/core'
import {
  expectEqual,
  expectIds,
  expectSame,
  expectTxboxError,
  storedInbox,
  storedOutbox,
} from '../assertions.js'
import { defineCase } from '../case.js'
import { inboxEvent, outboxEvent } from '../events.js'

/** Bad input typed as the API's own types, as a caller without TypeScript would pass it. */
const bad = <T>(value: unknown): T => value as T
const LEASE = { leaseMs: 60_000, workerId: 'w' }

/**
 * Ids a NATS header cannot carry verbatim: the NATS client trims header values (so `o-1 `
 * would reach JetStream as `o-1`, a duplicate) and a header line cannot hold control characters.
 */
const NATS_ALTERED_IDS: readonly [string, string][] = [
  ['with a trailing space', 'o-1 '],
  ['with a leading space', ' o-1'],
  ['with a trailing tab', 'o-1\t'],
  ['with a trailing no-break space', 'o-1\u00a0'],
  ['with a leading byte order mark', '\ufeffo-1'],
  ['with a trailing line separator', 'o-1\u2028'],
  ['with CR LF inside', 'a\r\nb'],
  ['with LF inside', 'a\nb'],
  ['with NUL inside', 'a\u0000b'],
  ['with DEL inside', 'a\u007fb'],
  ['with a C1 control inside', 'a\u0085b'],
]

/** Subjects NATS cannot publish to, or would take as a pattern. */
const UNPUBLISHABLE_SUBJECTS = [
  'orders..created',
  '.orders',
  'orders.',
  'orders.*',
  'orders.>',
  '>',
  '*.created',
]

/** Ids that travel verbatim, though awkward: inner spaces, both Unicode normal forms, quotes, colons. */
const VERBATIM_IDS = ['o 1', 'caf\u00e9', 'cafe\u0301', 'a:b', '"q\'', 'x'.repeat(255), '🎉\u00a0🎉']

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
    id: 'outbox.validation.unknown-ids-create-nothing',
    title:
      'every write to an unknown outbox id, fenced or not, fails or reports it not applied, and stores nothing',
    async run({ store }) {
      const o = store.outbox
      await o.findOrCreate(outboxEvent('held'))
      await o.claim({ limit: 1, ...LEASE })
      await o.findOrCreateMany(['waiting', 'dead'].map((id) => outboxEvent(id)))
      await o.markAsFailed('dead', 'poison')
      const before = await Promise.all(['held', 'waiting', 'dead'].map((id) => storedOutbox(store, id)))
      const fence = { workerId: LEASE.workerId }
      const notFound: [string, () => Promise<unknown>][] = [
        ['markAsPublishing', () => o.markAsPublishing('nope')],
        ['markAsSent', () => o.markAsSent('nope')],
        ['fenced markAsSent', () => o.markAsSent('nope', fence)],
        ['markAsFailed', () => o.markAsFailed('nope', 'x')],
        ['fenced markAsFailed', () => o.markAsFailed('nope', 'x', fence)],
        ['retryLater', () => o.retryLater('nope', { errorMessage: 'x', delayMs: 10 })],
        ['fenced retryLater', () => o.retryLater('nope', { errorMessage: 'x', delayMs: 10, ...fence })],
        ['requeueFailed', () => o.requeueFailed(['nope'])],
      ]
      const notApplied: [string, () => Promise<string[]>, string[]][] = [
        ['renewLease', () => o.renewLease(['nope'], LEASE), []],
        ['markManyAsSent', () => o.markManyAsSent(['nope']), ['nope']],
        ['fenced markManyAsSent', () => o.markManyAsSent(['nope'], fence), ['nope']],
      ]
      const expectNothingStored = async (label: string) => {
        expectSame(
          await store.oracle.outbox('nope'),
          null,
          `oracle: ${label} stored no row for the unknown id`,
        )
        expectSame(await store.oracle.outboxCount(), 3, `oracle: ${label} left the row count at 3`)
      }
      for (const [label, action] of notFound) {
        await expectTxboxError('EventNotFoundError', action, `${label} of an unknown id`)
        await expectNothingStored(label)
      }
      for (const [label, action, unapplied] of notApplied) {
        expectIds(await action(), unapplied, `${label} of an unknown id applies nothing`)
        await expectNothingStored(label)
      }
      expectSame(await o.get('nope'), null, 'get of the unknown id is still null')
      expectEqual(
        await Promise.all(['held', 'waiting', 'dead'].map((id) => storedOutbox(store, id))),
        before,
        'oracle: the stored events are untouched',
      )
      expectEqual(
        await o.getCountByStatus(),
        { pending: 1, publishing: 1, sent: 0, failed: 1 },
        'counts are unchanged',
      )
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
  defineCase({
    id: 'inbox.validation.unknown-ids-create-nothing',
    title:
      'every write to an unknown inbox id, inside a transaction or not, raises EventNotFoundError and stores nothing',
    async run({ store, capabilities }) {
      const i = store.inbox
      await i.claim(inboxEvent('in-progress'), LEASE)
      await i.claim(inboxEvent('done'), LEASE)
      await i.markAsProcessed('done')
      const before = await Promise.all(['in-progress', 'done'].map((id) => storedInbox(store, id)))
      const notFound: [string, () => Promise<unknown>][] = [
        ['markAsProcessed', () => i.markAsProcessed('nope')],
        ['markAsFailed', () => i.markAsFailed('nope', 'x')],
      ]
      if (capabilities.transactions !== 'none') {
        notFound.push([
          'markAsProcessed with { tx }',
          () => store.transaction((tx) => i.markAsProcessed('nope', { tx })),
        ])
      }
      for (const [label, action] of notFound) {
        await expectTxboxError('EventNotFoundError', action, `inbox ${label} of an unknown id`)
        expectSame(
          await store.oracle.inbox('nope'),
          null,
          `oracle: ${label} stored no row for the unknown id`,
        )
        expectSame(await store.oracle.inboxCount(), 2, `oracle: ${label} left the row count at 2`)
      }
      expectSame(await i.isProcessed('nope'), false, 'the unknown id is not processed')
      expectSame(await i.get('nope'), null, 'inbox get of the unknown id is still null')
      expectEqual(
        await Promise.all(['in-progress', 'done'].map((id) => storedInbox(store, id))),
        before,
        'oracle: the stored messages are untouched',
      )
    },
  }),
  defineCase({
    id: 'outbox.validation.nats-verbatim',
    title:
      'findOrCreate refuses ids NATS would alter (edge whitespace, control characters) and subjects it cannot publish to; lookups still take old ids',
    async run({ store }) {
      const o = store.outbox
      for (const [label, eventId] of NATS_ALTERED_IDS) {
        await expectTxboxError(
          'ValidationError',
          () => o.findOrCreate(outboxEvent(eventId)),
          `eventId ${label}`,
        )
      }
      await expectTxboxError(
        'ValidationError',
        () => o.findOrCreateMany([outboxEvent('fine'), outboxEvent('o-1 ')]),
        'findOrCreateMany with one id NATS would trim',
      )
      for (const subject of UNPUBLISHABLE_SUBJECTS) {
        await expectTxboxError(
          'ValidationError',
          () => o.findOrCreate(outboxEvent('s', { subject })),
          `subject ${JSON.stringify(subject)}`,
        )
      }
      expectSame(await store.oracle.outboxCount(), 0, 'oracle: nothing refused was stored')
      for (const eventId of VERBATIM_IDS)
        await o.findOrCreate(outboxEvent(eventId, { subject: 'orders.v*2>x' }))
      for (const eventId of VERBATIM_IDS) {
        expectSame(
          (await store.oracle.outbox(eventId))?.eventId,
          eventId,
          `oracle: ${JSON.stringify(eventId)} stored as is`,
        )
      }
      expectSame(
        await store.oracle.outboxCount(),
        VERBATIM_IDS.length,
        'oracle: NFC and NFD ids are two events',
      )
      // Rows stored before the rule must stay reachable for inspection and redrive.
      expectSame(
        await o.get('o-1 '),
        null,
        'get of an id with edge whitespace is a lookup, not a ValidationError',
      )
      await expectTxboxError(
        'EventNotFoundError',
        () => o.markAsSent(' o-1'),
        'markAsSent of an old-style id',
      )
      await expectTxboxError(
        'EventNotFoundError',
        () => o.requeueFailed(['a\nb']),
        'requeueFailed of an old-style id',
      )
    },
  }),
  defineCase({
    id: 'inbox.validation.nats-verbatim',
    title: 'the inbox refuses the same ids and subjects at creation, and still looks up old ids',
    async run({ store }) {
      const i = store.inbox
      for (const [label, eventId] of NATS_ALTERED_IDS) {
        await expectTxboxError(
          'ValidationError',
          () => i.findOrCreate(inboxEvent(eventId)),
          `findOrCreate: eventId ${label}`,
        )
        await expectTxboxError(
          'ValidationError',
          () => i.claim(inboxEvent(eventId), LEASE),
          `claim: eventId ${label}`,
        )
      }
      for (const subject of UNPUBLISHABLE_SUBJECTS) {
        await expectTxboxError(
          'ValidationError',
          () => i.findOrCreate(inboxEvent('s', { subject })),
          `subject ${JSON.stringify(subject)}`,
        )
      }
      expectSame(await store.oracle.inboxCount(), 0, 'oracle: nothing refused was stored')
      for (const eventId of VERBATIM_IDS) await i.findOrCreate(inboxEvent(eventId))
      expectSame(
        await store.oracle.inboxCount(),
        VERBATIM_IDS.length,
        'oracle: every verbatim id stored apart',
      )
      expectSame(await i.get('o-1 '), null, 'inbox get of an old-style id is a lookup')
      await expectTxboxError(
        'EventNotFoundError',
        () => i.markAsProcessed('a\r\nb'),
        'markAsProcessed of an old-style id',
      )
    },
  }),
]
