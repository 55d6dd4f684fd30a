import type { AttributeValue } from '@aws-sdk/client-dynamodb'
import {
  type InboxEvent,
  type InboxStatus,
  type OutboxEvent,
  type OutboxStatus,
  PayloadTooLargeError,
  utf8Bytes,
} from '@txbox/core'
import { ADAPTER } from './errors.js'

/** A raw DynamoDB item. txbox stores only strings (S) and numbers (N). */
export type Item = Record<string, AttributeValue>

export const S = (value: string): AttributeValue => ({ S: value })
export const N = (value: number): AttributeValue => ({ N: String(value) })

/** A string attribute, or undefined when absent. */
const str = (item: Item, name: string): string | undefined => item[name]?.S

/** A number attribute, or undefined when absent. */
export const num = (item: Item, name: string): number | undefined => {
  const value = item[name]?.N
  return value === undefined ? undefined : Number(value)
}

/** A required string attribute: its absence means the item is not what txbox wrote. */
export const requiredStr = (item: Item, name: string): string => {
  const value = str(item, name)
  if (value === undefined)
    throw new TypeError(`stored item ${item.pk?.S ?? '?'} has no string attribute ${name}`)
  return value
}

/** A required number attribute. */
const requiredNum = (item: Item, name: string): number => {
  const value = num(item, name)
  if (value === undefined)
    throw new TypeError(`stored item ${item.pk?.S ?? '?'} has no number attribute ${name}`)
  return value
}

/** DynamoDB's hard item size limit: 400 KB, attribute names and values together. */
export const MAX_ITEM_BYTES = 400 * 1024

/**
 * Room kept free at enqueue for the attributes later transitions add (claimedBy of up to
 * 255 characters, lease and status timestamps, index keys, expiresAt). A later
 * `errorMessage` larger than what is left still fails, as a StorageError from DynamoDB.
 */
const RESERVED_BYTES = 2 * 1024

/**
 * A conservative size of an item as DynamoDB counts it: UTF-8 bytes of every attribute name
 * plus its value; a number is counted at its maximum of 21 bytes.
 */
export const itemBytes = (item: Item): number => {
  let total = 0
  for (const [name, value] of Object.entries(item)) {
    total += utf8Bytes(name)
    if (value.S !== undefined) total += utf8Bytes(value.S)
    else if (value.N !== undefined) total += 21
    else total += 1
  }
  return total
}

/**
 * Refuses, before any write, an item that cannot take the attributes later transitions
 * add (`laterBytes` more than the usual reserve, e.g. a keyed event's chain attributes):
 * PayloadTooLargeError with the item's size, whatever `maxEventBytes` allowed.
 */
export const assertItemFits = (item: Item, eventId: string, laterBytes = 0): void => {
  const size = itemBytes(item) + RESERVED_BYTES + laterBytes
  if (size > MAX_ITEM_BYTES) throw new PayloadTooLargeError(ADAPTER, eventId, size, MAX_ITEM_BYTES)
}

/** Copies the optional attributes `item` holds onto `event`: strings, numbers and epoch-ms dates. */
const withOptional = <E extends object>(
  event: E,
  item: Item,
  optional: { text?: readonly string[]; numbers?: readonly string[]; dates?: readonly string[] },
): E => {
  const target = event as Record<string, unknown>
  for (const name of optional.text ?? []) if (str(item, name) !== undefined) target[name] = str(item, name)
  for (const name of optional.numbers ?? []) if (num(item, name) !== undefined) target[name] = num(item, name)
  for (const name of optional.dates ?? []) {
    const ms = num(item, name)
    if (ms !== undefined) target[name] = new Date(ms)
  }
  return event
}

/** The event an outbox item stores (index keys and bookkeeping left out). */
export const toOutboxEvent = (item: Item): OutboxEvent =>
  withOptional(
    {
      eventId: requiredStr(item, 'eventId'),
      subject: requiredStr(item, 'subject'),
      payload: requiredStr(item, 'payload'),
      status: requiredStr(item, 'status') as OutboxStatus,
      enqueuedAt: new Date(requiredNum(item, 'enqueuedAt')),
      retryCount: requiredNum(item, 'retryCount'),
      availableAt: new Date(requiredNum(item, 'availableAt')),
    } satisfies OutboxEvent,
    item,
    {
      text: ['headers', 'orderingKey', 'errorMessage', 'claimedBy'],
      numbers: ['keySeq'],
      dates: ['sentAt', 'claimedAt', 'leaseUntil'],
    },
  )

/** The event an inbox item stores. */
export const toInboxEvent = (item: Item): InboxEvent =>
  withOptional(
    {
      eventId: requiredStr(item, 'eventId'),
      subject: requiredStr(item, 'subject'),
      payload: requiredStr(item, 'payload'),
      status: requiredStr(item, 'status') as InboxStatus,
      receivedAt: new Date(requiredNum(item, 'receivedAt')),
      deliveries: requiredNum(item, 'deliveries'),
    } satisfies InboxEvent,
    item,
    {
      text: ['headers', 'stream', 'errorMessage', 'claimedBy'],
      numbers: ['streamSeq'],
      dates: ['processedAt', 'claimedAt', 'leaseUntil'],
    },
  )
