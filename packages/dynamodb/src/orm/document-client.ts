import type { AttributeValue, TransactWriteItem } from '@aws-sdk/client-dynamodb'
import { NumberValue, type TransactWriteCommandInput } from '@aws-sdk/lib-dynamodb'
import { ValidationError } from '@txbox/core'
import { ADAPTER } from '../errors.js'

/** One action of lib-dynamodb's `TransactWriteCommand`. */
export type DocumentTransactWriteItem = NonNullable<TransactWriteCommandInput['TransactItems']>[number]

type Native =
  | string
  | boolean
  | null
  | NumberValue
  | Uint8Array
  | Set<unknown>
  | Native[]
  | { [key: string]: Native }

/**
 * An AttributeValue as the Document client's native value. Numbers become `NumberValue`,
 * which lib-dynamodb writes back as the very same `N` string: nothing is rounded.
 */
const toNative = (value: AttributeValue, path: string): Native => {
  if (value.S !== undefined) return value.S
  if (value.N !== undefined) return NumberValue.from(value.N)
  if (value.BOOL !== undefined) return value.BOOL
  if (value.NULL !== undefined) return null
  if (value.B !== undefined) return value.B
  if (value.SS !== undefined) return new Set(value.SS)
  if (value.NS !== undefined) return new Set(value.NS.map((n) => NumberValue.from(n)))
  if (value.BS !== undefined) return new Set(value.BS)
  if (value.L !== undefined) return value.L.map((item, index) => toNative(item, `${path}[${index}]`))
  if (value.M !== undefined) return toNativeMap(value.M, path) ?? {}
  throw new ValidationError(ADAPTER, `documentActions: ${path} is not a DynamoDB AttributeValue`)
}

const toNativeMap = (
  values: Record<string, AttributeValue> | undefined,
  path: string,
): Record<string, Native> | undefined =>
  values === undefined
    ? undefined
    : Object.fromEntries(
        Object.entries(values).map(([key, value]) => [key, toNative(value, `${path}.${key}`)]),
      )

const ACTIONS = ['Put', 'Update', 'Delete', 'ConditionCheck'] as const

/**
 * The actions of a txbox collector as lib-dynamodb `TransactWriteCommand` actions, to send
 * with your own in one transaction through a `DynamoDBDocumentClient`:
 *
 * ```ts
 * const collector: TransactWriteItem[] = []
 * await store.outbox.findOrCreate(event, { tx: collector })
 * await documentClient.send(new TransactWriteCommand({
 *   TransactItems: [{ Put: { TableName: 'orders', Item: order } }, ...documentActions(collector)],
 * }))
 * ```
 *
 * txbox speaks raw AttributeValues, and the Document client would marshal them a second
 * time: this converts them (Item, Key, ExpressionAttributeValues) to native values.
 */
export const documentActions = (collector: readonly TransactWriteItem[]): DocumentTransactWriteItem[] => {
  if (!Array.isArray(collector)) {
    throw new ValidationError(
      ADAPTER,
      'documentActions needs the TransactWriteItem[] collector you passed as { tx }',
    )
  }
  return collector.map((action, index) => {
    const kinds = ACTIONS.filter((kind) => action?.[kind] !== undefined)
    const [kind] = kinds
    if (kind === undefined || kinds.length !== 1) {
      throw new ValidationError(
        ADAPTER,
        `documentActions: action ${index} must have exactly one of Put, Update, Delete, ConditionCheck`,
      )
    }
    const { Item, Key, ExpressionAttributeValues, ...rest } = action[kind] as {
      Item?: Record<string, AttributeValue>
      Key?: Record<string, AttributeValue>
      ExpressionAttributeValues?: Record<string, AttributeValue>
    }
    const converted: Record<string, unknown> = { ...rest }
    const at = `action ${index} ${kind}`
    if (Item !== undefined) converted.Item = toNativeMap(Item, `${at}.Item`)
    if (Key !== undefined) converted.Key = toNativeMap(Key, `${at}.Key`)
    if (ExpressionAttributeValues !== undefined)
      converted.ExpressionAttributeValues = toNativeMap(
        ExpressionAttributeValues,
        `${at}.ExpressionAttributeValues`,
      )
    return { [kind]: converted } as DocumentTransactWriteItem
  })
}
