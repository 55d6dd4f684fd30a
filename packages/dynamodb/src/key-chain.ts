import { MAX_EVENT_ID_LENGTH, utf8Bytes } from '@txbox/core'
import type { UpdateSpec, Values } from './client.js'
import { type ChainLink, chainedOrderKey, claimPk, orderKey, timeKey } from './keys.js'
import { type Item, N, num, S } from './rows.js'

/**
 * Ordering keys on DynamoDB (docs/CONTRACT.md §2 "Ordering keys"). The events of one key
 * form a chain: each keyed event stores its `keySeq` and `prevEventId` (the event with
 * `keySeq - 1`), and the key's counter item (`ob#k#<key>`) holds `{ lastSeq, lastEventId }`.
 * An enqueue writes the counter with the condition `lastSeq = <value read>` in the same
 * TransactWriteItems as the events' puts, so one key's enqueues are serialized by
 * DynamoDB and the chain has no hole. An event is the head of its key when its predecessor
 * is sent or deleted (or `failed`, if dead letters do not block): a claim checks that with
 * a ConditionCheck in the claiming transaction, which is exact and strongly consistent.
 *
 * An event whose predecessor is still pending or publishing is "parked": moved in the claim
 * index to the `timed` partition at a recheck instant, so claims do not read it again and
 * again. Its predecessor's `nextEventId` points to it, and the write that makes the
 * predecessor `sent` or `failed` puts it back (`unparkPk`/`unparkSk` say where). Parking is
 * only a hint: if that second write is lost (the process died in between), the event comes
 * due at its recheck instant anyway, and the claim's ConditionCheck decides.
 */

/** How long a parked event waits before a claim looks at it again if nothing put it back. */
export const PARK_RECHECK_MS = 60_000

/** The counter of one ordering key: `lastSeq` 0 when the key has no counter item yet. */
export interface KeyCounter {
  lastSeq: number
  lastEventId: string | undefined
}

/** The counter an item holds (`undefined`: none stored). */
export const counterOf = (item: Item | undefined): KeyCounter => ({
  lastSeq: item === undefined ? 0 : (num(item, 'lastSeq') ?? 0),
  lastEventId: item?.lastEventId?.S,
})

/**
 * The counter's write: to `next`, only while it still holds `old` (attribute_not_exists for
 * a new key). A second enqueue of the key that read the same value fails this condition.
 */
export const counterSpec = (old: KeyCounter, next: KeyCounter): UpdateSpec => ({
  update: 'SET #lastSeq = :next, #lastEventId = :lastId',
  condition: old.lastSeq === 0 ? 'attribute_not_exists(#pk)' : '#lastSeq = :old',
  values: { ':next': N(next.lastSeq), ':lastId': S(next.lastEventId ?? ''), ':old': N(old.lastSeq) },
})

/** An event's position in its key's chain: `chainSeq` once chained again (see `ChainLink`), else `keySeq`. */
const positionOf = (item: Item): number | undefined => num(item, 'chainSeq') ?? num(item, 'keySeq')

/** The chain link a stored keyed event carries (undefined for an unkeyed one). */
export const linkOfItem = (item: Item): ChainLink | undefined => {
  const orderingKey = item.orderingKey?.S
  const keySeq = positionOf(item)
  if (orderingKey === undefined || keySeq === undefined) return undefined
  return { orderingKey, keySeq, prevEventId: item.prevEventId?.S }
}

/**
 * What a predecessor means for the event after it: `released` (sent, deleted by cleanup, or
 * no longer at that place: its id was deleted and enqueued again as another event, or it was
 * a dead letter redriven to the end of its key), `failed` (blocks only when dead letters
 * block keys), or `holding` (pending or publishing).
 */
export type PredecessorState = 'released' | 'failed' | 'holding'

export const predecessorState = (prev: Item | undefined, link: ChainLink): PredecessorState => {
  if (prev === undefined || prev.orderingKey?.S !== link.orderingKey || positionOf(prev) !== link.keySeq - 1)
    return 'released'
  const status = prev.status?.S
  if (status === 'sent') return 'released'
  return status === 'failed' ? 'failed' : 'holding'
}

/** The expression values every predecessor condition uses. */
const predecessorValues = (link: ChainLink): Values => ({
  ':key': S(link.orderingKey),
  ':prevSeq': N(link.keySeq - 1),
  ':sent': S('sent'),
  ':failed': S('failed'),
  ':pending': S('pending'),
  ':publishing': S('publishing'),
})

/** The predecessor sits at position `:prevSeq` of the chain (`positionOf` in a condition). */
const AT_PREV_POSITION = '(#chainSeq = :prevSeq OR (attribute_not_exists(#chainSeq) AND #keySeq = :prevSeq))'

/**
 * The ConditionCheck on the predecessor that lets a claim take the event after it: the
 * predecessor is sent or no longer at that place. A `failed` one is not in it: a claim
 * that goes past a dead letter marks it instead (`skippedSpec`), in the same transaction.
 */
export const releasedCondition = (link: ChainLink): { condition: string; values: Values } => ({
  condition: `attribute_not_exists(#pk) OR attribute_not_exists(#keySeq) OR #orderingKey <> :key OR NOT ${AT_PREV_POSITION} OR #status = :sent`,
  values: predecessorValues(link),
})

/** The condition that the predecessor is this chain's and `holding` (the case in which its successor parks). */
export const holdingCondition = (link: ChainLink): { condition: string; values: Values } => ({
  condition: `#orderingKey = :key AND ${AT_PREV_POSITION} AND (#status = :pending OR #status = :publishing)`,
  values: predecessorValues(link),
})

/** The condition that the predecessor is this chain's and `failed`. */
export const failedCondition = (link: ChainLink): { condition: string; values: Values } => ({
  condition: `#orderingKey = :key AND ${AT_PREV_POSITION} AND #status = :failed`,
  values: predecessorValues(link),
})

/**
 * The write with which a claim under `keyedDeadLetters: 'skip'` goes past a dead letter (its
 * predecessor, still this chain's and failed): it marks it `skipped`, so that a redrive
 * (`requeueFailed`) knows a later event of the key may be in flight or sent, and chains the
 * dead letter again at the end of its key instead of making it the head (which would let it
 * run beside that later event).
 */
export const skippedSpec = (link: ChainLink): UpdateSpec => {
  const failed = failedCondition(link)
  return {
    update: 'SET #skipped = :one',
    condition: failed.condition,
    values: { ...failed.values, ':one': N(1) },
  }
}

/** Where an event sits in the claim index when it is not parked: `ready` at its position, or `timed` until due. */
export const placement = (
  availableAtMs: number,
  nowMs: number,
  seqKey: string,
  shard: number,
): { pk: string; sk: string } =>
  availableAtMs <= nowMs
    ? { pk: claimPk('ready', shard), sk: seqKey }
    : { pk: claimPk('timed', shard), sk: timeKey(availableAtMs) }

/**
 * The attributes of a parked event: in `timed` at its recheck instant, and where to go
 * back to (`unparkPk`/`unparkSk`, its placement as of `nowMs`, still right later since
 * a parked event's availableAt does not change).
 */
export const parkedAttributes = (
  availableAtMs: number,
  nowMs: number,
  seqKey: string,
  shard: number,
): Item => {
  const back = placement(availableAtMs, nowMs, seqKey, shard)
  const recheck = nowMs + PARK_RECHECK_MS
  return {
    gsi1pk: S(claimPk('timed', shard)),
    gsi1sk: S(timeKey(recheck)),
    dueAt: N(recheck),
    unparkPk: S(back.pk),
    unparkSk: S(back.sk),
  }
}

/** Puts a parked event back where it belongs; a no-op (false condition) on one that moved since. */
export const unparkSpec = (prevEventId: string): UpdateSpec => ({
  update: 'SET #gsi1pk = #unparkPk, #gsi1sk = #unparkSk, #dueAt = #availableAt REMOVE #unparkPk, #unparkSk',
  condition: 'attribute_exists(#unparkPk) AND #status = :pending AND #prevEventId = :prev',
  values: { ':pending': S('pending'), ':prev': S(prevEventId) },
})

/** The attributes a parked event carries besides its index keys (removed by any write that places it). */
export const UNPARK_ATTRIBUTES = '#unparkPk, #unparkSk'

/**
 * Bytes a keyed event's item may grow by after its size was checked: the chain link in
 * `seqKey` and its copies in the index keys and `unparkSk`, `prevEventId`, `nextEventId`,
 * `unparkPk`, counted at their longest.
 */
export const chainBytes = (orderingKey: string): number => {
  // An id of 255 UTF-16 code units is at most 3 bytes each in UTF-8, JSON escaping included.
  const longestId = 3 * MAX_EVENT_ID_LENGTH
  const link = utf8Bytes(
    chainedOrderKey(orderKey(0, 0), { orderingKey, keySeq: Number.MAX_SAFE_INTEGER, prevEventId: '' }),
  )
  return 4 * (link + longestId) + 2 * longestId + utf8Bytes(orderingKey) + 200
}
