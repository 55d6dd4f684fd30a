import type { Capabilities, EnqueueParams, OutboxEvent, OutboxRepository } from '@txbox/core'
import { expectEqual, expectIds, expectSame, mustBeSame, storedOutbox } from '../assertions.js'
import { type CaseContext, defineCase, requiresTransactions, skipCase } from '../case.js'
import { chunk, FOLDED_PAIRS, outboxEvent } from '../events.js'
import type { ConformanceFixture } from '../target.js'
import { NO_PEER_REASON } from './concurrency.js'
import { gate, turns } from './rules-3.js'

/**
 * Ordering keys (docs/CONTRACT.md §2 "Ordering keys"): the `keySeq` a store gives each keyed
 * event, the key's validation, and the claim rule that makes per-key order hold across any
 * number of relays: only the first unsent event of a key is claimable.
 */

const SECOND = 1_000
const MINUTE = 60 * SECOND
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR

/** The skip reason of a target whose capabilities do not declare `orderingKeys: true`. */
export const NO_ORDERING_KEYS_REASON = 'the target does not declare orderingKeys'

const requiresOrderingKeys = (capabilities: Capabilities): string | undefined =>
  capabilities.orderingKeys === true ? undefined : NO_ORDERING_KEYS_REASON

/** A keyed event. */
const keyed = (eventId: string, orderingKey: string, overrides: Partial<EnqueueParams> = {}): EnqueueParams =>
  outboxEvent(eventId, { orderingKey, ...overrides })

/** Bad input typed as the API's own types, as a caller without TypeScript would pass it. */
const bad = <T>(value: unknown): T => value as T

const isKeySeq = (value: unknown): boolean => Number.isSafeInteger(value) && (value as number) > 0

/** Checks an event carries `orderingKey` exactly and a `keySeq` that is a positive safe integer. */
const expectKeyed = (event: OutboxEvent, orderingKey: string, label: string): void => {
  expectSame(event.orderingKey, orderingKey, `${label}: orderingKey as given`)
  expectSame(
    isKeySeq(event.keySeq),
    true,
    `${label}: keySeq must be a positive safe integer, got ${String(event.keySeq)}`,
  )
}

/** Checks that each event's `keySeq` is above the one before it (one key's events, in the order they were stored). */
const expectIncreasing = (events: readonly OutboxEvent[], label: string): void => {
  for (let index = 1; index < events.length; index++) {
    const before = events[index - 1] as OutboxEvent
    const after = events[index] as OutboxEvent
    expectSame(
      (after.keySeq ?? Number.NaN) > (before.keySeq ?? Number.NaN),
      true,
      `${label}: keySeq of ${after.eventId} (${String(after.keySeq)}) must be above ${before.eventId}'s (${String(before.keySeq)})`,
    )
  }
}

/** Checks that the oracle's row and `get` carry the same `orderingKey` and `keySeq` as `event`. */
const expectStoredKey = async (
  store: ConformanceFixture,
  event: OutboxEvent,
  label: string,
): Promise<void> => {
  const row = await storedOutbox(store, event.eventId)
  expectSame(row.orderingKey, event.orderingKey, `${label}: oracle: orderingKey as returned`)
  expectSame(row.keySeq, event.keySeq, `${label}: oracle: keySeq as returned`)
  const read = await store.outbox.get(event.eventId)
  expectSame(read?.orderingKey, event.orderingKey, `${label}: get: orderingKey as returned`)
  expectSame(read?.keySeq, event.keySeq, `${label}: get: keySeq as returned`)
}

/** Checks that an unkeyed event has neither field (undefined, not null) in what was returned, in get and in the oracle. */
const expectUnkeyed = async (store: ConformanceFixture, event: OutboxEvent, label: string): Promise<void> => {
  const row = await storedOutbox(store, event.eventId)
  const read = await store.outbox.get(event.eventId)
  for (const [where, seen] of [
    ['returned', event],
    ['get', read],
    ['oracle', row],
  ] as const) {
    expectSame(seen?.orderingKey, undefined, `${label}: ${where}: no orderingKey on an unkeyed event`)
    expectSame(seen?.keySeq, undefined, `${label}: ${where}: no keySeq on an unkeyed event`)
  }
}

/** Escapes a field name for a regular expression. */
const literal = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/** The message of the ValidationError `call` throws, or undefined when it throws none. */
const validationMessage = async (call: () => Promise<unknown>): Promise<string | undefined> => {
  try {
    await call()
  } catch (error) {
    const e = error as { name?: unknown; code?: unknown; message?: unknown }
    if (e?.name === 'ValidationError' && e.code === 'VALIDATION' && typeof e.message === 'string')
      return e.message
    return undefined
  }
  return undefined
}

/** Checks `call` is refused with a ValidationError whose message reads `[txbox] [<adapter>] outbox: <field> ...`. */
const expectRefusedNaming = async (
  field: string,
  call: () => Promise<unknown>,
  label: string,
): Promise<void> => {
  const message = await validationMessage(call)
  const expected = new RegExp(`^\\[txbox\\] \\[[^\\]]+\\] outbox: (?:[\\w\\[\\]]+\\.)?${literal(field)}\\b`)
  expectSame(
    message !== undefined && expected.test(message),
    true,
    `${label}: a ValidationError reading "[txbox] [<adapter>] outbox: ${field} ..." must refuse it; got ${message ?? 'no ValidationError'}`,
  )
}

/** True for a ValidationError (a store that cannot run a claim while a transaction is open refuses so). */
const isValidationError = (error: unknown): boolean => {
  const e = error as { name?: unknown; code?: unknown }
  return e?.name === 'ValidationError' && e.code === 'VALIDATION'
}

/** Keys and events per key of the cross-connection race; a third more events without a key. */
const RACE_KEYS = 30
const RACE_EVENTS_PER_KEY = 6
const RACE_UNKEYED = 30
const RACE_PEERS = 3
const RACE_CLAIMERS = 8
const RACE_LIMIT = 10
/** How long the race may take before the case reports what was not drained (the case timeout is longer). */
const RACE_DEADLINE_MS = 90_000
/** How many items a failed check mentions (the count says how many there were). */
const SHOWN = 5

/** `none` when `items` is empty, else the count and the first few, for one check. */
const listed = (items: readonly string[]): string =>
  items.length === 0 ? 'none' : `${items.length}: ${items.slice(0, SHOWN).join(', ')}`

/**
 * How long the commit-order case lets the outside enqueue answer while the transaction is
 * open. An enqueue that waits for the open transaction (PostgreSQL and MySQL lock the key,
 * SQLite has one writer) has not answered by then, and commits after it; any other answers
 * within a round trip. Generous, since the machine may be loaded.
 */
const OUTSIDE_ANSWER_MS = 2_000
/** How long past that a claim made while the transaction is open may take before it counts as waiting for it. */
const CLAIM_ANSWER_MS = 1_000

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

export const outboxOrderingCases = [
  defineCase({
    id: 'outbox.ordering.key-seq',
    title:
      'each keyed event gets a keySeq strictly increasing per key in enqueue order (one by one and in a batch interleaving keys), never reused after cleanup; keys are exact (case, normalization, Unicode); a duplicate returns its stored keySeq; unkeyed events have neither field',
    skipReason: requiresOrderingKeys,
    async run({ store, clock }) {
      const o = store.outbox
      const lease = { limit: 100, leaseMs: HOUR, workerId: 'w' }

      // Keys a case-insensitive or normalizing comparison would fold are two keys: the first
      // event of each is a head, so one claim takes both. (Nothing else is stored yet.)
      const folded: OutboxEvent[] = []
      for (const [index, pair] of FOLDED_PAIRS.entries())
        for (const [side, key] of pair.entries()) {
          const event = await o.findOrCreate(keyed(`fold-${index}-${side}`, key))
          expectKeyed(event, key, `key ${JSON.stringify(key)}`)
          folded.push(event)
        }
      expectIds(
        await o.claim(lease),
        folded.map(({ eventId }) => eventId),
        'keys that differ only by case, normalization or ß/ss are different keys: each is the head of its own',
      )
      for (const event of folded)
        await expectStoredKey(store, event, `key ${JSON.stringify(event.orderingKey)}`)

      // Keys round-trip exactly: astral and combining characters, and the longest key.
      for (const [label, key] of [
        ['a Unicode key', 'Bestellung-\u00e9-e\u0301-\u5ba2\u6237-\u{1f984}'],
        ['a key of 255 UTF-16 code units ending in a surrogate pair', `${'k'.repeat(253)}\u{1f984}`],
      ] as const) {
        const event = await o.findOrCreate(keyed(`exact-${label.length}`, key))
        expectKeyed(event, key, label)
        await expectStoredKey(store, event, label)
      }

      // One by one, keys interleaved, an unkeyed event between them.
      const a1 = await o.findOrCreate(keyed('a1', 'A'))
      const b1 = await o.findOrCreate(keyed('b1', 'B'))
      const a2 = await o.findOrCreate(keyed('a2', 'A'))
      const u1 = await o.findOrCreate(outboxEvent('u1'))
      const a3 = await o.findOrCreate(keyed('a3', 'A'))
      const b2 = await o.findOrCreate(keyed('b2', 'B'))
      for (const event of [a1, a2, a3]) expectKeyed(event, 'A', event.eventId)
      for (const event of [b1, b2]) expectKeyed(event, 'B', event.eventId)
      expectIncreasing([a1, a2, a3], 'key A, one by one')
      expectIncreasing([b1, b2], 'key B, one by one, interleaved with A')

      // One batch interleaving three keys (one of them new) and unkeyed events.
      const batch = await o.findOrCreateMany([
        keyed('c1', 'C'),
        keyed('a4', 'A'),
        outboxEvent('u2'),
        keyed('b3', 'B'),
        keyed('c2', 'C'),
        keyed('a5', 'A'),
        outboxEvent('u3'),
        keyed('c3', 'C'),
        keyed('b4', 'B'),
      ])
      expectIds(
        batch,
        ['c1', 'a4', 'u2', 'b3', 'c2', 'a5', 'u3', 'c3', 'b4'],
        'the batch answers in input order',
      )
      const byId = new Map(batch.map((event) => [event.eventId, event]))
      const pick = (ids: readonly string[]): OutboxEvent[] =>
        ids.flatMap((id) => {
          const event = byId.get(id)
          return event ? [event] : []
        })
      for (const [key, ids] of [
        ['A', ['a4', 'a5']],
        ['B', ['b3', 'b4']],
        ['C', ['c1', 'c2', 'c3']],
      ] as const)
        for (const event of pick(ids)) expectKeyed(event, key, `${event.eventId} (batch)`)
      expectIncreasing([a1, a2, a3, ...pick(['a4', 'a5'])], 'key A across calls and in a batch')
      expectIncreasing([b1, b2, ...pick(['b3', 'b4'])], 'key B across calls and in a batch')
      expectIncreasing(pick(['c1', 'c2', 'c3']), 'key C, new in a batch')

      // A duplicate id returns the stored event, its key and keySeq, whatever the new call says.
      const again = await o.findOrCreate(keyed('a2', 'B', { payload: '"again"' }))
      expectSame(again.orderingKey, 'A', 'a duplicate of a2 with another key returns the stored key')
      expectSame(again.keySeq, a2.keySeq, 'a duplicate of a2 returns its stored keySeq')
      expectSame(again.payload, a2.payload, 'a duplicate of a2 returns the stored payload')
      const [batchAgain, a6, unkeyedAgain] = await o.findOrCreateMany([
        keyed('b3', 'B', { payload: '"again"' }),
        keyed('a6', 'A'),
        keyed('u1', 'A'),
      ])
      expectSame(
        batchAgain?.keySeq,
        byId.get('b3')?.keySeq,
        'a duplicate of b3 in a batch returns its stored keySeq',
      )
      expectSame(unkeyedAgain?.orderingKey, undefined, 'a keyed duplicate of the unkeyed u1 stays unkeyed')
      expectSame(unkeyedAgain?.keySeq, undefined, 'a keyed duplicate of the unkeyed u1 gets no keySeq')
      if (a6) {
        expectKeyed(a6, 'A', 'a6')
        expectIncreasing([...pick(['a4', 'a5']), a6], 'key A after duplicates')
      }

      // Unkeyed events carry neither field, anywhere.
      for (const event of [u1, ...pick(['u2', 'u3'])]) await expectUnkeyed(store, event, event.eventId)

      // Every keyed event as the oracle and get read it.
      const keyedEvents = [
        a1,
        a2,
        a3,
        b1,
        b2,
        ...pick(['c1', 'a4', 'b3', 'c2', 'a5', 'c3', 'b4']),
        ...(a6 ? [a6] : []),
      ]
      for (const event of keyedEvents) await expectStoredKey(store, event, event.eventId)

      // A key's counter outlives its events: after cleanup deleted all of them, keySeq goes on.
      const z1 = await o.findOrCreate(keyed('z1', 'Z'))
      const z2 = await o.findOrCreate(keyed('z2', 'Z'))
      expectIncreasing([z1, z2], 'key Z')
      expectEqual(await o.markManyAsSent(['z1', 'z2']), [], 'z1 and z2 marked sent')
      clock.advance(2 * DAY)
      expectSame(await o.cleanup(1), 2, 'cleanup deletes the two sent events of key Z (nothing else is sent)')
      expectSame(await store.oracle.outbox('z1'), null, 'oracle: z1 deleted')
      expectSame(await store.oracle.outbox('z2'), null, 'oracle: z2 deleted')
      const z3 = await o.findOrCreate(keyed('z3', 'Z'))
      expectKeyed(z3, 'Z', 'z3')
      expectIncreasing(
        [z1, z2, z3],
        'key Z after cleanup deleted every event of the key (keySeq never reused)',
      )
      await expectStoredKey(store, z3, 'z3')
      const z1Again = await o.findOrCreate(keyed('z1', 'Z'))
      expectIncreasing([z3, z1Again], 'key Z: an id enqueued again after cleanup is a new event at the back')
    },
  }),
  defineCase({
    id: 'outbox.ordering.validation',
    title:
      'a bad orderingKey (not a string, empty, over 255 code units, edge whitespace, a control character, a lone surrogate) is a ValidationError naming orderingKey, and nothing is stored',
    skipReason: requiresOrderingKeys,
    async run({ store, capabilities }) {
      const o = store.outbox
      const keys: readonly (readonly [string, unknown])[] = [
        ['a number', 42],
        ['null', null],
        ['an object', { key: 'k' }],
        ['an empty string', ''],
        ['256 code units', 'k'.repeat(256)],
        ['a leading space', ' order-1'],
        ['a trailing space', 'order-1 '],
        ['a leading no-break space', '\u00a0order-1'],
        ['a trailing line separator', 'order-1\u2028'],
        ['a CR', 'order\r1'],
        ['an LF', 'order\n1'],
        ['a tab', 'order\t1'],
        ['a NUL', 'order\u00001'],
        ['a DEL', 'order\u007f1'],
        ['a C1 control', 'order\u00851'],
        ['a lone high surrogate', 'order-\ud83e'],
        ['a lone low surrogate', '\udd84-order'],
      ]
      for (const [label, key] of keys) {
        const params = bad<EnqueueParams>({
          ...outboxEvent(`bad-${label.replace(/\W+/g, '-')}`),
          orderingKey: key,
        })
        await expectRefusedNaming(
          'orderingKey',
          () => o.findOrCreate(params),
          `findOrCreate, orderingKey with ${label}`,
        )
        await expectRefusedNaming(
          'orderingKey',
          () => o.findOrCreateMany([keyed('fine-1', 'K'), params, outboxEvent('fine-2')]),
          `findOrCreateMany, a batch whose second event has an orderingKey with ${label}`,
        )
        if (capabilities.transactions !== 'none')
          await store.transaction(
            (tx) =>
              expectRefusedNaming(
                'orderingKey',
                () => o.findOrCreate(params, { tx }),
                `findOrCreate with { tx }, orderingKey with ${label}`,
              ),
            { rollback: true },
          )
      }
      expectSame(
        await store.oracle.outboxCount(),
        0,
        'oracle: no refused event, and no event of a refused batch, is stored',
      )
      expectEqual(
        await o.getCountByStatus(),
        { pending: 0, publishing: 0, sent: 0, failed: 0 },
        'counts: nothing stored',
      )
      // The rule is the one for a new event's id: the longest key and any printable character are fine.
      const longest = await o.findOrCreate(keyed('fine-longest', 'k'.repeat(255)))
      expectKeyed(longest, 'k'.repeat(255), 'a key of 255 code units')
      const inner = await o.findOrCreate(keyed('fine-inner', 'order 1 * > . \u00e9'))
      expectKeyed(inner, 'order 1 * > . \u00e9', 'a key with inner spaces and NATS wildcard characters')
      expectSame(await store.oracle.outboxCount(), 2, 'oracle: the two valid keyed events are stored')
    },
  }),
  defineCase({
    id: 'outbox.ordering.heads-only',
    title:
      'a claim takes only the first unsent event of each key: the next waits while the head is publishing, after its lease expired (the same head is reclaimed), through its retry backoff, while it is a dead letter and while it is not due yet; other keys and unkeyed events flow; the limit counts heads',
    skipReason: requiresOrderingKeys,
    async run({ store, clock }) {
      const o = store.outbox
      const t0 = clock.peekMs()
      const claim = (workerId: string, limit = 100) => o.claim({ limit, leaseMs: MINUTE, workerId })
      const sent = async (ids: readonly string[], workerId: string) =>
        expectEqual(
          await o.markManyAsSent(ids, { workerId }),
          [],
          `${ids.join(', ')} marked sent by ${workerId}`,
        )
      const expectWaiting = async (ids: readonly string[], label: string) => {
        for (const id of ids) {
          const row = await storedOutbox(store, id)
          expectSame(row.status, 'pending', `${label}: oracle: ${id} still pending`)
          expectSame(row.claimedBy, undefined, `${label}: oracle: ${id} never claimed`)
        }
      }

      // The limit counts heads: a claim that takes `limit` rows and then drops the non-heads
      // answers fewer than it could.
      await o.findOrCreateMany([
        keyed('p1a', 'P1'),
        keyed('p1b', 'P1'),
        keyed('p1c', 'P1'),
        keyed('p2a', 'P2'),
        outboxEvent('pu'),
        keyed('p3a', 'P3'),
      ])
      expectIds(
        await claim('w', 2),
        ['p1a', 'p2a'],
        'limit 2: the heads of P1 and P2, not the next event of P1',
      )
      expectIds(await claim('w', 2), ['pu', 'p3a'], 'limit 2 again: the unkeyed event and the head of P3')
      expectIds(await claim('w', 2), [], 'the rest of P1 waits behind its head')
      await expectWaiting(['p1b', 'p1c'], 'behind the publishing p1a')
      await sent(['p1a', 'p2a', 'pu', 'p3a'], 'w')
      expectIds(await claim('w'), ['p1b'], 'once p1a is sent, p1b (only) is the head of P1')
      await sent(['p1b'], 'w')
      expectIds(await claim('w'), ['p1c'], 'then p1c')
      await sent(['p1c'], 'w')

      // K: a head that is retried, expires, dies and is redriven; L: another key; D: a head
      // not due yet; u*: no key.
      await o.findOrCreateMany([
        keyed('k1', 'K'),
        keyed('l1', 'L'),
        keyed('k2', 'K'),
        outboxEvent('u1'),
        keyed('d1', 'D', { availableAt: new Date(t0 + HOUR) }),
        keyed('l2', 'L'),
        keyed('d2', 'D'),
        keyed('k3', 'K'),
        outboxEvent('u2'),
      ])
      expectIds(
        await claim('w1'),
        ['k1', 'l1', 'u1', 'u2'],
        'one claim: the head of each key and the unkeyed events; d2 waits behind d1, which is not due',
      )
      await expectWaiting(['k2', 'k3', 'l2', 'd1', 'd2'], 'after the first claim')
      expectIds(
        await claim('w1'),
        [],
        'while the heads are publishing (live leases), nothing more of their keys',
      )

      await sent(['l1', 'u1', 'u2'], 'w1')
      expectIds(await claim('w1'), ['l2'], "L goes on while K's head is still publishing")
      await sent(['l2'], 'w1')

      clock.advance(MINUTE + SECOND)
      const reclaimed = await claim('w2')
      expectIds(reclaimed, ['k1'], "k1's lease expired: the same head is claimed again, not k2")
      expectSame(reclaimed[0]?.claimedBy, 'w2', 'the reclaimed head is held by its new worker')
      await expectWaiting(['k2', 'k3'], 'after the head was reclaimed')

      await o.retryLater('k1', { errorMessage: 'publish failed', delayMs: 30 * SECOND, workerId: 'w2' })
      await o.findOrCreate(outboxEvent('u3'))
      expectIds(
        await claim('w2'),
        ['u3'],
        'k1 is in its backoff: K stays held although k2 is due; unkeyed events flow',
      )
      await expectWaiting(['k2', 'k3'], "through k1's backoff")
      await sent(['u3'], 'w2')
      clock.advance(30 * SECOND)
      expectIds(await claim('w3'), ['k1'], "after k1's backoff: k1 again, still not k2")

      await o.markAsFailed('k1', 'dead letter', { workerId: 'w3' })
      expectIds(
        await claim('w3'),
        [],
        "k1 is a dead letter: K is held (keyedDeadLetters defaults to 'block')",
      )
      await expectWaiting(['k2', 'k3'], 'while k1 is a dead letter')
      expectSame(await o.requeueFailed(['k1']), 1, 'k1 redriven')
      expectIds(await claim('w4'), ['k1'], 'the redriven k1 is the head again')
      expectIds(await claim('w4'), [], 'k2 waits until k1 is sent')
      await sent(['k1'], 'w4')
      expectIds(await claim('w4'), ['k2'], 'k1 sent: k2 is the head')
      await sent(['k2'], 'w4')
      expectIds(await claim('w4'), ['k3'], 'k2 sent: k3 is the head')
      await sent(['k3'], 'w4')

      clock.set(t0 + HOUR)
      expectIds(await claim('w5'), ['d1'], 'd1 is due: the head of D, before d2')
      await sent(['d1'], 'w5')
      expectIds(await claim('w5'), ['d2'], 'd1 sent: d2')
      await sent(['d2'], 'w5')
      expectIds(await claim('w5'), [], 'everything is sent')

      const all = [
        'p1a',
        'p1b',
        'p1c',
        'p2a',
        'pu',
        'p3a',
        'k1',
        'l1',
        'k2',
        'u1',
        'd1',
        'l2',
        'd2',
        'k3',
        'u2',
        'u3',
      ]
      for (const id of all) expectSame((await storedOutbox(store, id)).status, 'sent', `oracle: ${id} sent`)
      expectSame(await store.oracle.outboxCount(), all.length, 'oracle: no other row')
    },
  }),
  defineCase({
    id: 'outbox.ordering.dead-letter-policy',
    title:
      "with keyedDeadLetters 'block' (the default) a dead-lettered head holds its key until it is redriven and sent; with 'skip' the key goes on without it and the redriven dead letter comes after; a bad keyedDeadLetters is a ValidationError",
    skipReason: requiresOrderingKeys,
    async run({ store }) {
      const o = store.outbox
      const lease = { limit: 100, leaseMs: MINUTE, workerId: 'w' }
      const block = { ...lease, keyedDeadLetters: 'block' as const }
      const skip = { ...lease, keyedDeadLetters: 'skip' as const }
      const sent = async (ids: readonly string[]) =>
        expectEqual(await o.markManyAsSent(ids, { workerId: 'w' }), [], `${ids.join(', ')} marked sent`)

      // 'block': H is held by its dead letter until it is redriven and sent.
      await o.findOrCreateMany([keyed('h1', 'H'), keyed('h2', 'H')])
      expectIds(await o.claim(lease), ['h1'], 'the head of H')
      await o.markAsFailed('h1', 'dead letter', { workerId: 'w' })
      expectIds(await o.claim(lease), [], 'default: the dead letter h1 holds H')
      expectIds(await o.claim(block), [], "'block': the dead letter h1 holds H")
      expectSame((await storedOutbox(store, 'h2')).status, 'pending', 'oracle: h2 waits')
      expectSame(await o.requeueFailed(['h1']), 1, 'h1 redriven')
      expectIds(await o.claim(block), ['h1'], "'block': the redriven h1 is the head")
      expectIds(await o.claim(block), [], "'block': h2 waits while h1 is publishing")
      await sent(['h1'])
      expectIds(await o.claim(block), ['h2'], "'block': h1 sent, h2 follows")
      await sent(['h2'])

      // 'skip': F goes on past its dead letter; redriven, the dead letter comes last.
      await o.findOrCreateMany([keyed('f1', 'F'), keyed('f2', 'F'), keyed('f3', 'F')])
      expectIds(await o.claim(skip), ['f1'], 'the head of F')
      await o.markAsFailed('f1', 'dead letter', { workerId: 'w' })
      expectIds(await o.claim(lease), [], 'default (block): the dead letter f1 holds F')
      expectIds(await o.claim(skip), ['f2'], "'skip': F goes on without its dead letter")
      expectIds(await o.claim(skip), [], "'skip': f3 still waits for the publishing f2")
      await sent(['f2'])
      expectIds(await o.claim(skip), ['f3'], "'skip': then f3")
      await sent(['f3'])
      expectSame(await o.requeueFailed(['f1']), 1, 'f1 redriven')
      expectIds(
        await o.claim(skip),
        ['f1'],
        "'skip': the redriven f1 is published after the events that followed it",
      )
      await sent(['f1'])
      for (const id of ['h1', 'h2', 'f1', 'f2', 'f3'])
        expectSame((await storedOutbox(store, id)).status, 'sent', `oracle: ${id} sent`)

      // A bad policy is refused before anything is claimed.
      await o.findOrCreate(keyed('g1', 'G'))
      for (const value of ['Block', 'none', '', 1, null, true])
        await expectRefusedNaming(
          'keyedDeadLetters',
          () => o.claim({ ...lease, keyedDeadLetters: bad(value) }),
          `claim with keyedDeadLetters ${JSON.stringify(value)}`,
        )
      const g1 = await storedOutbox(store, 'g1')
      expectSame(g1.status, 'pending', 'oracle: a refused claim claimed nothing')
      expectSame(g1.claimedBy, undefined, 'oracle: a refused claim set no worker')
    },
  }),
  defineCase({
    id: 'outbox.ordering.skip-redrive-in-flight',
    title:
      "with 'skip', a dead letter redriven while a later event of its key is publishing waits for it: a key with an event publishing has no other claimable event, that event (once its lease expires) is the one claimed again, then the key drains one event per claim",
    skipReason: requiresOrderingKeys,
    async run({ store, clock }) {
      const o = store.outbox
      const skip = { limit: 100, leaseMs: MINUTE, workerId: 'w', keyedDeadLetters: 'skip' as const }
      await o.findOrCreateMany([keyed('r1', 'R'), keyed('r2', 'R'), keyed('r3', 'R')])
      expectIds(await o.claim(skip), ['r1'], 'the head of R')
      await o.markAsFailed('r1', 'dead letter', { workerId: 'w' })
      expectIds(await o.claim(skip), ['r2'], "'skip': R goes on without its dead letter")
      expectSame(await o.requeueFailed(['r1']), 1, 'r1 redriven while r2 is publishing')
      expectIds(await o.claim(skip), [], 'r2 is publishing: neither the redriven r1 nor r3 is claimable')
      expectIds(
        await o.claim({ ...skip, keyedDeadLetters: 'block' }),
        [],
        "'block' too: r2 is publishing, so nothing else of R is claimable",
      )
      clock.advance(MINUTE + SECOND)
      expectIds(await o.claim(skip), ['r2'], "r2's lease expired: r2 (not r1) is claimed again")
      expectIds(await o.claim(skip), [], 'r2 publishing again: still nothing else of R')
      expectEqual(await o.markManyAsSent(['r2'], { workerId: 'w' }), [], 'r2 sent')
      // The order of r1 against r3 is given up by 'skip'; one event of R per claim is not.
      const drained: string[] = []
      for (let round = 0; round < 2; round++) {
        const claimed = (await o.claim(skip)).map((event) => event.eventId)
        expectSame(
          claimed.length,
          1,
          `round ${round + 1}: exactly one event of R per claim, got [${claimed.join(', ')}]`,
        )
        expectIds(
          await o.claim(skip),
          [],
          `round ${round + 1}: nothing else of R while ${claimed[0]} is publishing`,
        )
        expectEqual(await o.markManyAsSent(claimed, { workerId: 'w' }), [], `round ${round + 1}: sent`)
        drained.push(...claimed)
      }
      expectEqual([...drained].sort(), ['r1', 'r3'], 'r1 and r3 were each claimed once')
      for (const id of ['r1', 'r2', 'r3'])
        expectSame((await storedOutbox(store, id)).status, 'sent', `oracle: ${id} sent`)
    },
  }),
  defineCase({
    id: 'outbox.ordering.lowest-publishing-head',
    title:
      'when two events of a key are publishing (markAsPublishing of a later one while the head is claimed), the lower keySeq stays the head: nothing of the key is claimable under its live lease, and once it expires that same event is claimed again, never the later one',
    skipReason: requiresOrderingKeys,
    async run({ store, clock }) {
      const o = store.outbox
      const claim = { limit: 100, leaseMs: MINUTE, workerId: 'w' }
      await o.findOrCreateMany([keyed('l1', 'L'), keyed('l2', 'L'), keyed('l3', 'L')])
      expectIds(await o.claim(claim), ['l1'], 'the head of L')
      await o.markAsPublishing('l2')
      expectIds(await o.claim(claim), [], 'l1 publishing under a live lease: nothing of L is claimable')
      clock.advance(MINUTE + SECOND)
      expectIds(
        await o.claim(claim),
        ['l1'],
        "l1's lease expired: l1 (the lowest publishing event) is claimed again",
      )
      expectEqual(await o.markManyAsSent(['l1'], { workerId: 'w' }), [], 'l1 sent')
      expectSame((await storedOutbox(store, 'l3')).status, 'pending', 'oracle: l3 never claimed')
    },
  }),
  defineCase({
    id: 'outbox.ordering.mixed-limit',
    title:
      'a claim over keyed heads and unkeyed events interleaved takes the first `limit` of them in enqueue order, whatever source each comes from: no more than the limit, none passed over for a later one',
    skipReason: requiresOrderingKeys,
    async run({ store }) {
      const o = store.outbox
      const claim = (limit: number) => o.claim({ limit, leaseMs: MINUTE, workerId: 'w' })
      await o.findOrCreateMany([
        keyed('a1', 'A'),
        keyed('a2', 'A'),
        outboxEvent('u1'),
        keyed('b1', 'B'),
        outboxEvent('u2'),
        keyed('c1', 'C'),
        outboxEvent('u3'),
      ])
      // With A's head publishing, a store may look for keyed heads and unkeyed events apart
      // (PostgreSQL does): 3 unkeyed and 2 keyed heads are claimable, the limit is 3.
      expectIds(await claim(1), ['a1'], 'limit 1: the first event, the head of A')
      expectIds(
        await claim(3),
        ['u1', 'b1', 'u2'],
        'limit 3: the first three claimable in enqueue order (a2 waits behind a1), keyed and unkeyed interleaved',
      )
      for (const id of ['c1', 'u3', 'a2'])
        expectSame(
          (await storedOutbox(store, id)).status,
          'pending',
          `oracle: ${id} not claimed beyond the limit`,
        )
      expectIds(await claim(10), ['c1', 'u3'], 'the rest of what is claimable')
      expectEqual(await o.markManyAsSent(['a1'], { workerId: 'w' }), [], 'a1 sent')
      expectIds(await claim(10), ['a2'], 'a1 sent: a2 is the head of A')
    },
  }),
  defineCase({
    id: 'outbox.ordering.heads-across-connections',
    title: `${RACE_CLAIMERS} claimers over the fixture and ${RACE_PEERS} peers drain ${RACE_KEYS} keys x ${RACE_EVENTS_PER_KEY} events (and ${RACE_UNKEYED} unkeyed): never two events of one key claimed and unsent at once, each key claimed in keySeq order, every event sent once`,
    skipReason: requiresOrderingKeys,
    async run(context: CaseContext) {
      const { store } = context
      const all: OutboxRepository[] = [store.outbox]
      for (let index = 0; index < RACE_PEERS; index++) {
        const peer = await context.openPeer()
        if (peer === undefined) return skipCase(NO_PEER_REASON)
        all.push(peer.outbox)
      }
      // Keys interleaved as traffic would be: event n of every key, then event n + 1.
      const params: EnqueueParams[] = []
      for (let round = 0; round < RACE_EVENTS_PER_KEY; round++) {
        for (let key = 0; key < RACE_KEYS; key++) params.push(keyed(`key-${key}-${round}`, `key-${key}`))
        for (let index = round; index < RACE_UNKEYED; index += RACE_EVENTS_PER_KEY)
          params.push(outboxEvent(`unkeyed-${index}`))
      }
      const enqueued = new Map<string, OutboxEvent>()
      for (const [index, batch] of chunk(params, 50).entries())
        for (const event of await (all[index % all.length] as OutboxRepository).findOrCreateMany(batch))
          enqueued.set(event.eventId, event)
      mustBeSame(enqueued.size, params.length, 'every event enqueued')
      for (let key = 0; key < RACE_KEYS; key++)
        expectIncreasing(
          Array.from(
            { length: RACE_EVENTS_PER_KEY },
            (_, round) => enqueued.get(`key-${key}-${round}`) as OutboxEvent,
          ),
          `key-${key}, enqueued in order`,
        )

      /**
       * Per key, the event claimed and not yet sent, and whether its markManyAsSent has been
       * called: once it has, the store may have applied it, so the next event of the key may
       * be claimed before that call answers.
       */
      const inFlight = new Map<string, { readonly eventId: string; marking: boolean }>()
      /** Per key, the keySeq of each claim, in the order the claims answered. */
      const claimOrder = new Map<string, number[]>()
      const claimedBy = new Map<string, string>()
      const overlaps: string[] = []
      const twice: string[] = []
      const strangers: string[] = []
      const unapplied: string[] = []
      let sentCount = 0
      const deadline = Date.now() + RACE_DEADLINE_MS
      const worker = async (index: number) => {
        const outbox = all[index % all.length] as OutboxRepository
        const workerId = `worker-${index}`
        while (sentCount < params.length && Date.now() < deadline) {
          const claimed = await outbox.claim({ limit: RACE_LIMIT, leaseMs: HOUR, workerId })
          if (claimed.length === 0) {
            // Every head is held by another claimer: look again once they had a turn.
            await turns(1)
            continue
          }
          const held: { readonly key: string; readonly entry: { eventId: string; marking: boolean } }[] = []
          for (const event of claimed) {
            const stored = enqueued.get(event.eventId)
            if (!stored) strangers.push(event.eventId)
            const first = claimedBy.get(event.eventId)
            if (first !== undefined) twice.push(`${event.eventId} (${first} and ${workerId})`)
            claimedBy.set(event.eventId, workerId)
            const key = stored?.orderingKey
            if (key === undefined) continue
            if (event.orderingKey !== key || event.keySeq !== stored?.keySeq)
              strangers.push(
                `${event.eventId} claimed as ${String(event.orderingKey)}/${String(event.keySeq)}`,
              )
            const holder = inFlight.get(key)
            if (holder !== undefined && !holder.marking)
              overlaps.push(
                `${event.eventId} claimed while ${holder.eventId} was neither sent nor being marked sent`,
              )
            const entry = { eventId: event.eventId, marking: false }
            inFlight.set(key, entry)
            held.push({ key, entry })
            claimOrder.set(key, [...(claimOrder.get(key) ?? []), stored?.keySeq ?? Number.NaN])
          }
          // The publish: other claimers run while these events are held.
          await turns(1)
          for (const { entry } of held) entry.marking = true
          const notApplied = await outbox.markManyAsSent(
            claimed.map(({ eventId }) => eventId),
            { workerId },
          )
          for (const { key, entry } of held) if (inFlight.get(key) === entry) inFlight.delete(key)
          unapplied.push(...notApplied)
          sentCount += claimed.length - notApplied.length
        }
      }
      await Promise.all(Array.from({ length: RACE_CLAIMERS }, (_, index) => worker(index)))

      expectSame(listed(overlaps), 'none', 'two events of one key claimed and unsent at once')
      expectSame(listed(twice), 'none', 'events claimed twice')
      expectSame(listed(strangers), 'none', 'claimed events that were not enqueued so')
      expectSame(listed(unapplied), 'none', 'markManyAsSent found a lease lost (a second claimer held it)')
      const outOfOrder: string[] = []
      for (let key = 0; key < RACE_KEYS; key++) {
        const expected = Array.from(
          { length: RACE_EVENTS_PER_KEY },
          (_, round) => enqueued.get(`key-${key}-${round}`)?.keySeq ?? Number.NaN,
        )
        const seen = claimOrder.get(`key-${key}`) ?? []
        if (seen.join(',') !== expected.join(','))
          outOfOrder.push(`key-${key}: claimed ${seen.join(',')}, keySeq order ${expected.join(',')}`)
      }
      expectSame(listed(outOfOrder), 'none', 'keys whose events were not claimed once each, in keySeq order')
      const lost = [...enqueued.keys()].filter((id) => !claimedBy.has(id))
      expectSame(listed(lost), 'none', `events never claimed within ${RACE_DEADLINE_MS / SECOND} s (lost)`)
      expectSame(await store.oracle.outboxCount(), params.length, 'oracle: exactly the enqueued rows')
      const notSent: string[] = []
      for (const batch of chunk([...enqueued.keys()], 25))
        await Promise.all(
          batch.map(async (eventId) => {
            const row = await store.oracle.outbox(eventId)
            if (row?.status !== 'sent') notSent.push(`${eventId} (${row?.status ?? 'missing'})`)
          }),
        )
      expectSame(listed(notSent), 'none', 'oracle: rows not sent')
    },
  }),
  defineCase({
    id: 'outbox.ordering.commit-order',
    title:
      'a key enqueued in an open transaction and from outside it: no claim takes an event of the key while one with a lower keySeq is still to commit, keySeq follows commit order, and the key drains in keySeq order',
    skipReason: (capabilities) => requiresOrderingKeys(capabilities) ?? requiresTransactions(capabilities),
    async run({ store }) {
      const o = store.outbox
      const KEY = 'order-42'
      const lease = { limit: 10, leaseMs: HOUR, workerId: 'relay' }
      const drained: OutboxEvent[] = []
      let refused = 0
      /** One claim, its events of KEY marked sent at once; a claim a single-writer store refuses counts as empty. */
      const claimAndSend = async (): Promise<OutboxEvent[]> => {
        let claimed: OutboxEvent[]
        try {
          claimed = await o.claim(lease)
        } catch (error) {
          // SQLite: the open transaction is on the store's own connection (outbox.tx.claim-while-open).
          if (!isValidationError(error)) throw error
          refused++
          return []
        }
        drained.push(...claimed)
        if (claimed.length > 0)
          expectEqual(
            await o.markManyAsSent(
              claimed.map(({ eventId }) => eventId),
              { workerId: lease.workerId },
            ),
            [],
            'claimed events marked sent',
          )
        return claimed
      }

      const wrote = gate()
      const end = gate()
      let inside: OutboxEvent | undefined
      const enqueueAndWait = async (tx: unknown) => {
        inside = await o.findOrCreate(keyed('in-tx', KEY), { tx })
        wrote.open()
        await end.promise
      }
      // The store's own store.transaction when it has one, as an application opens it: on a
      // store with one connection (SQLite) the fixture's raw transaction would take in the
      // outside enqueue, which store.transaction makes wait for it.
      const done = (
        store.storeTransaction === undefined
          ? store.transaction(enqueueAndWait)
          : store.storeTransaction.call(store, enqueueAndWait)
      ).then(
        () => undefined,
        (error: unknown) => error,
      )
      await Promise.race([wrote.promise, done])
      // Not awaited: PostgreSQL and MySQL make it wait for the open transaction's lock on the
      // key, SQLite for its writer; the memory store and Redis commit it at once.
      let answered = false
      const outside = o.findOrCreate(keyed('outside', KEY)).then(
        (event) => {
          answered = true
          return { event }
        },
        (error: unknown) => {
          answered = true
          return { error }
        },
      )
      const claimedWhileOpen: OutboxEvent[] = []
      /** A claim that waits for the open transaction (one connection): it answers after the commit. */
      let waitingClaim: Promise<OutboxEvent[]> | undefined
      const waitUntil = Date.now() + OUTSIDE_ANSWER_MS
      for (;;) {
        await turns(20)
        const answeredBefore = answered
        const claim = claimAndSend()
        const claimAnswered = await Promise.race([
          claim.then(() => true),
          delay(Math.max(0, waitUntil - Date.now()) + CLAIM_ANSWER_MS).then(() => false),
        ])
        if (!claimAnswered) {
          waitingClaim = claim
          break
        }
        claimedWhileOpen.push(...(await claim))
        if (answeredBefore || Date.now() >= waitUntil) break
        await delay(50)
      }
      // Answered while the transaction was open: it committed first. Still waiting: it waits
      // for the transaction and commits after it.
      const outsideFirst = answered
      end.open()
      mustBeSame(await done, undefined, 'the transaction commits')
      const outsideResult = await outside
      if ('error' in outsideResult)
        mustBeSame(outsideResult.error, undefined, 'the enqueue from outside the transaction must succeed')
      await waitingClaim

      const a = await storedOutbox(store, 'in-tx')
      const b = await storedOutbox(store, 'outside')
      expectKeyed(a, KEY, 'oracle: in-tx')
      expectKeyed(b, KEY, 'oracle: outside')
      if (inside?.keySeq !== undefined)
        expectSame(
          inside.keySeq,
          a.keySeq,
          'the keySeq answered inside the transaction is the one stored at commit',
        )
      if ('event' in outsideResult)
        expectSame(
          outsideResult.event.keySeq,
          b.keySeq,
          'the keySeq answered to the outside enqueue is the one stored',
        )
      expectSame(
        (b.keySeq ?? Number.NaN) < (a.keySeq ?? Number.NaN),
        outsideFirst,
        `keySeq follows commit order: the outside enqueue ${outsideFirst ? 'answered while the transaction was open (committed first)' : `had not answered after ${OUTSIDE_ANSWER_MS} ms (waits for the transaction, commits after it)`}; got in-tx ${String(a.keySeq)}, outside ${String(b.keySeq)}`,
      )
      for (const event of claimedWhileOpen) {
        expectSame(
          event.eventId === 'in-tx',
          false,
          "a claim while the transaction was open took the transaction's own event",
        )
        expectSame(
          (event.keySeq ?? Number.NaN) < (a.keySeq ?? Number.NaN),
          true,
          `${event.eventId} (keySeq ${String(event.keySeq)}) was claimed while in-tx (keySeq ${String(a.keySeq)}) was still to commit`,
        )
      }

      for (let round = 0; round < 4; round++) if ((await claimAndSend()).length === 0) break
      const after = await o.findOrCreate(keyed('after', KEY))
      expectKeyed(after, KEY, 'after')
      for (let round = 0; round < 4; round++) if ((await claimAndSend()).length === 0) break
      expectIds(
        drained,
        [a, b, after].sort((x, y) => (x.keySeq ?? 0) - (y.keySeq ?? 0)).map(({ eventId }) => eventId),
        `the key drains in keySeq order, each event once (claims refused while the transaction was open: ${refused})`,
      )
      expectSame(a.keySeq === b.keySeq, false, 'in-tx and outside have distinct keySeqs')
      expectIncreasing(
        [a, b].sort((x, y) => (x.keySeq ?? 0) - (y.keySeq ?? 0)).concat(after),
        'an event enqueued after both commits comes after both',
      )
      for (const id of ['in-tx', 'outside', 'after'])
        expectSame((await storedOutbox(store, id)).status, 'sent', `oracle: ${id} sent`)
    },
  }),
]
