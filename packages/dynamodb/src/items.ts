import type { AttributeValue } from '@aws-sdk/client-dynamodb'
import { utf8Bytes } from '@txbox/core'

/** A raw DynamoDB item. txbox stores only strings (S) and numbers (N). */
export type Item = Record<string, AttributeValue>

export const S = (value: string): AttributeValue => ({ S: value })
export const N = (value: number): AttributeValue => ({ N: String(value) })

/** A string attribute, or undefined when absent. */
export const str = (item: Item, name: string): string | undefined => item[name]?.S

/** A number attribute, or undefined when absent. */
export const num = (item: Item, name: string): number | undefined => {
  const value = item[name]?.N
  return value === undefined ? undefined : Number(value)
}

/** A stored epoch-ms number as a Date, or undefined when absent. */
export const date = (item: Item, name: string): Date | undefined => {
  const value = num(item, name)
  return value === undefined ? undefined : new Date(value)
}

/** A required string attribute: its absence means the item is not what txbox wrote. */
export const requiredStr = (item: Item, name: string): string => {
  const value = str(item, name)
  if (value === undefined)
    throw new TypeError(`stored item ${item.pk?.S ?? '?'} has no string attribute ${name}`)
  return value
}

/** A required number attribute. */
export const requiredNum = (item: Item, name: string): number => {
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
export const RESERVED_BYTES = 2 * 1024

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
