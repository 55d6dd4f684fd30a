import { expectSame, storedInbox, storedOutbox } from '../assertions.js'
import { defineCase } from '../case.js'
import { inboxEvent, outboxEvent } from '../events.js'

const LEASE = { leaseMs: 60_000, workerId: 'absent-worker' }

/**
 * Checks that each named optional field reads back as `undefined`: a store that maps a NULL
 * column, a missing attribute or an empty hash field to `null` or `''` hands callers a value
 * the contract's types say cannot be there (`event.sentAt?.getTime()` then throws on null).
 */
const expectAbsent = (event: object | null | undefined, fields: readonly string[], label: string) => {
  expectSame(event === null || event === undefined, false, `${label}: the event is returned`)
  const record = (event ?? {}) as Record<string, unknown>
  for (const field of fields) {
    expectSame(
      record[field],
      undefined,
      `${label}: ${field} was never set, so it must be undefined (not null, not '')`,
    )
  }
}

/** Reads one event by id from a list result. */
const pick = <T extends { eventId: string }>(events: readonly T[], eventId: string): T | undefined =>
  events.find((event) => event.eventId === eventId)

export const absentFieldCases = [
  defineCase({
    id: 'outbox.fields.absent-undefined',
    title:
      'optional outbox fields never set (headers, sentAt, errorMessage, claim fields) read back as undefined on every read path',
    async run({ store }) {
      const o = store.outbox
      const never = ['headers', 'sentAt', 'errorMessage', 'claimedAt', 'claimedBy', 'leaseUntil']
      expectAbsent(await o.findOrCreate(outboxEvent('plain')), never, 'findOrCreate (new)')
      expectAbsent(await o.findOrCreate(outboxEvent('plain')), never, 'findOrCreate (stored)')
      const [batched] = await o.findOrCreateMany([outboxEvent('batched')])
      expectAbsent(batched, never, 'findOrCreateMany')
      expectAbsent(await o.get('plain'), never, 'get of a pending event')
      expectAbsent(await store.oracle.outbox('plain'), never, 'oracle: a pending event')
      const pending = await o.findPending()
      expectAbsent(pick(pending, 'plain'), never, 'findPending')
      expectAbsent(pick(pending, 'batched'), never, 'findPending')

      await o.findOrCreate(outboxEvent('dead'))
      await o.markAsFailed('dead', 'poison')
      const deadNever = ['headers', 'sentAt', 'claimedAt', 'claimedBy', 'leaseUntil']
      expectAbsent(pick(await o.getFailedEvents(), 'dead'), deadNever, 'getFailedEvents')
      expectAbsent(await o.get('dead'), deadNever, 'get of a dead letter')
      expectAbsent(await storedOutbox(store, 'dead'), deadNever, 'oracle: a dead letter')

      await o.findOrCreate(outboxEvent('sent-unclaimed'))
      await o.markAsSent('sent-unclaimed')
      const sentNever = ['headers', 'errorMessage', 'claimedAt', 'claimedBy', 'leaseUntil']
      expectAbsent(await o.get('sent-unclaimed'), sentNever, 'get of an event sent without a claim')

      const claimed = await o.claim({ limit: 10, ...LEASE })
      for (const id of ['plain', 'batched'])
        expectAbsent(pick(claimed, id), ['headers', 'sentAt', 'errorMessage'], `claim of ${id}`)
      await o.markAsSent('plain', { workerId: LEASE.workerId })
      const released = ['headers', 'errorMessage', 'claimedBy', 'leaseUntil']
      expectAbsent(await o.get('plain'), released, 'get of a claimed event once sent')
      expectAbsent(await storedOutbox(store, 'plain'), released, 'oracle: a claimed event once sent')
      await o.retryLater('batched', { errorMessage: 'later', delayMs: 0, workerId: LEASE.workerId })
      const retried = ['headers', 'sentAt', 'claimedBy', 'leaseUntil']
      expectAbsent(await o.get('batched'), retried, 'get of a retried event')
      expectAbsent(pick(await o.findPending(), 'batched'), retried, 'findPending of a retried event')
      await o.requeueFailed(['dead'])
      expectAbsent(await o.get('dead'), ['headers', 'sentAt', 'claimedBy', 'leaseUntil'], 'get once requeued')
    },
  }),
  defineCase({
    id: 'inbox.fields.absent-undefined',
    title:
      'optional inbox fields never set (headers, stream, processedAt, errorMessage, claim fields) read back as undefined on every read path',
    async run({ store }) {
      const i = store.inbox
      const never = [
        'headers',
        'stream',
        'streamSeq',
        'processedAt',
        'errorMessage',
        'claimedAt',
        'claimedBy',
        'leaseUntil',
      ]
      expectAbsent(await i.findOrCreate(inboxEvent('taken')), never, 'findOrCreate (new)')
      expectAbsent(await i.findOrCreate(inboxEvent('taken')), never, 'findOrCreate (redelivery)')
      expectAbsent(await i.get('taken'), never, 'inbox get of a message taken by findOrCreate')
      expectAbsent(await storedInbox(store, 'taken'), never, 'oracle: a message taken by findOrCreate')

      const unclaimed = ['headers', 'stream', 'streamSeq', 'processedAt', 'errorMessage']
      const first = await i.claim(inboxEvent('claimed'), LEASE)
      expectAbsent(first.event, unclaimed, 'claim (new)')
      expectAbsent((await i.claim(inboxEvent('claimed'), LEASE)).event, unclaimed, 'claim (duplicate)')
      expectAbsent(await i.get('claimed'), unclaimed, 'inbox get of a claimed message')

      await i.markAsFailed('taken', 'handler crashed')
      const failedNever = [
        'headers',
        'stream',
        'streamSeq',
        'processedAt',
        'claimedAt',
        'claimedBy',
        'leaseUntil',
      ]
      expectAbsent(pick(await i.getFailedEvents(), 'taken'), failedNever, 'inbox getFailedEvents')
      expectAbsent(await i.get('taken'), failedNever, 'inbox get of a failed message')

      await i.markAsProcessed('claimed')
      const processedNever = ['headers', 'stream', 'streamSeq', 'errorMessage', 'claimedBy', 'leaseUntil']
      expectAbsent(await i.get('claimed'), processedNever, 'inbox get of a processed message')
      expectAbsent(await storedInbox(store, 'claimed'), processedNever, 'oracle: a processed message')
      expectAbsent(
        (await i.claim(inboxEvent('claimed'), LEASE)).event,
        processedNever,
        'claim of a processed message (duplicate)',
      )
      expectAbsent(
        await i.findOrCreate(inboxEvent('claimed')),
        processedNever,
        'findOrCreate of a processed message',
      )
    },
  }),
]
