import {
  BatchGetItemCommand,
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  type TransactWriteItem,
  TransactWriteItemsCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb'
import {
  cancellationCodes,
  isConditionalCheckFailed,
  isTransactionCanceled,
  isTransientConflict,
} from './errors.js'
import { type Item, S } from './items.js'

/** Expression values by placeholder (`:now` → value). Only the ones an expression uses are sent. */
export type Values = Record<string, import('@aws-sdk/client-dynamodb').AttributeValue>

/**
 * The `#name` placeholders an expression uses, each mapped to the attribute of the same
 * name. Every attribute is written as `#name` (several, like `status`, are reserved words),
 * and DynamoDB rejects unused entries, so the map is derived from the expressions.
 */
export const namesOf = (...expressions: (string | undefined)[]): Record<string, string> | undefined => {
  const names: Record<string, string> = {}
  for (const expression of expressions) {
    if (expression === undefined) continue
    for (const match of expression.matchAll(/#([A-Za-z0-9_]+)/g)) names[`#${match[1]}`] = match[1] ?? ''
  }
  return Object.keys(names).length === 0 ? undefined : names
}

/** The subset of `values` an expression uses (DynamoDB rejects unused values too). */
export const valuesOf = (values: Values, ...expressions: (string | undefined)[]): Values | undefined => {
  const used: Values = {}
  const text = expressions.filter((expression) => expression !== undefined).join(' ')
  for (const match of text.matchAll(/:([A-Za-z0-9_]+)/g)) {
    const key = `:${match[1]}`
    const value = values[key]
    if (value === undefined) throw new TypeError(`expression value ${key} is not defined`)
    used[key] = value
  }
  return Object.keys(used).length === 0 ? undefined : used
}

/** An update: the UpdateExpression, its optional ConditionExpression and the values both use. */
export interface UpdateSpec {
  update: string
  condition?: string | undefined
  values?: Values
}

/** One page of an index query. */
export interface QueryPage {
  items: Item[]
  count: number
  lastKey: Item | undefined
}

/** A query on one index partition. */
export interface QuerySpec {
  index: string
  /** The index's partition key attribute and its value. */
  pkName: string
  pk: string
  /** The index's sort key attribute; with `skBelow`, only entries whose sort key is lower. */
  skName: string
  skBelow?: string | undefined
  filter?: string | undefined
  values?: Values
  limit?: number | undefined
  startKey?: Item | undefined
  countOnly?: boolean
}

/**
 * The few DynamoDB calls txbox makes, on one table. Conditional writes report a false
 * condition as `undefined` instead of throwing, because for txbox it is an answer (the
 * item was taken, or is not there), never an error; every other failure propagates.
 */
export class TableClient {
  readonly client: DynamoDBClient
  readonly tableName: string

  constructor(client: DynamoDBClient, tableName: string) {
    this.client = client
    this.tableName = tableName
  }

  /**
   * Sends a command, retrying TransactionConflict (a single-item write that met a running
   * transaction on the same item): the write did not happen, so repeating it is safe.
   */
  async #send<T>(call: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await call()
      } catch (error) {
        if (!isTransientConflict(error) || attempt >= 10) throw error
        await backoff(attempt + 1)
      }
    }
  }

  async get(pk: string, projection?: string): Promise<Item | undefined> {
    const result = await this.#send(() =>
      this.client.send(
        new GetItemCommand({
          TableName: this.tableName,
          Key: { pk: S(pk) },
          ConsistentRead: true,
          ProjectionExpression: projection,
          ExpressionAttributeNames: namesOf(projection),
        }),
      ),
    )
    return result.Item
  }

  /** A conditional put; false when the condition failed. */
  async put(item: Item, condition: string): Promise<boolean> {
    try {
      await this.#send(() =>
        this.client.send(
          new PutItemCommand({
            TableName: this.tableName,
            Item: item,
            ConditionExpression: condition,
            ExpressionAttributeNames: namesOf(condition),
          }),
        ),
      )
      return true
    } catch (error) {
      if (isConditionalCheckFailed(error)) return false
      throw error
    }
  }

  /** A conditional update returning the new item, or undefined when the condition failed. */
  async update(pk: string, spec: UpdateSpec): Promise<Item | undefined> {
    try {
      const result = await this.#send(() =>
        this.client.send(
          new UpdateItemCommand({
            TableName: this.tableName,
            Key: { pk: S(pk) },
            UpdateExpression: spec.update,
            ConditionExpression: spec.condition,
            ExpressionAttributeNames: namesOf(spec.update, spec.condition),
            ExpressionAttributeValues: valuesOf(spec.values ?? {}, spec.update, spec.condition),
            ReturnValues: 'ALL_NEW',
          }),
        ),
      )
      return result.Attributes ?? {}
    } catch (error) {
      if (isConditionalCheckFailed(error)) return undefined
      throw error
    }
  }

  /** The `Update` action of a transaction, for `{ tx }` collectors. */
  updateAction(pk: string, spec: UpdateSpec): TransactWriteItem {
    return {
      Update: {
        TableName: this.tableName,
        Key: { pk: S(pk) },
        UpdateExpression: spec.update,
        ConditionExpression: spec.condition,
        ExpressionAttributeNames: namesOf(spec.update, spec.condition),
        ExpressionAttributeValues: valuesOf(spec.values ?? {}, spec.update, spec.condition),
      },
    }
  }

  /** The `Put` action of a transaction. */
  putAction(item: Item, condition: string): TransactWriteItem {
    return {
      Put: {
        TableName: this.tableName,
        Item: item,
        ConditionExpression: condition,
        ExpressionAttributeNames: namesOf(condition),
      },
    }
  }

  /** A conditional delete returning the deleted item, or undefined when the condition failed. */
  async delete(pk: string, condition: string, values: Values = {}): Promise<Item | undefined> {
    try {
      const result = await this.#send(() =>
        this.client.send(
          new DeleteItemCommand({
            TableName: this.tableName,
            Key: { pk: S(pk) },
            ConditionExpression: condition,
            ExpressionAttributeNames: namesOf(condition),
            ExpressionAttributeValues: valuesOf(values, condition),
            ReturnValues: 'ALL_OLD',
          }),
        ),
      )
      return result.Attributes ?? {}
    } catch (error) {
      if (isConditionalCheckFailed(error)) return undefined
      throw error
    }
  }

  /**
   * Runs a transaction of our own. Returns the per-action cancellation codes when it was
   * cancelled (e.g. `['ConditionalCheckFailed', 'None']`), or undefined when it committed.
   */
  async transact(actions: TransactWriteItem[]): Promise<string[] | undefined> {
    try {
      await this.client.send(new TransactWriteItemsCommand({ TransactItems: actions }))
      return undefined
    } catch (error) {
      if (isTransactionCanceled(error)) return cancellationCodes(error)
      throw error
    }
  }

  async query(spec: QuerySpec): Promise<QueryPage> {
    const keyCondition =
      spec.skBelow === undefined
        ? `#${spec.pkName} = :ipk`
        : `#${spec.pkName} = :ipk AND #${spec.skName} < :isk`
    const values: Values = { ...spec.values, ':ipk': S(spec.pk) }
    if (spec.skBelow !== undefined) values[':isk'] = S(spec.skBelow)
    const result = await this.#send(() =>
      this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          IndexName: spec.index,
          KeyConditionExpression: keyCondition,
          FilterExpression: spec.filter,
          ExpressionAttributeNames: namesOf(keyCondition, spec.filter),
          ExpressionAttributeValues: valuesOf(values, keyCondition, spec.filter),
          Limit: spec.limit,
          ExclusiveStartKey: spec.startKey,
          Select: spec.countOnly ? 'COUNT' : undefined,
        }),
      ),
    )
    return { items: result.Items ?? [], count: result.Count ?? 0, lastKey: result.LastEvaluatedKey }
  }

  /** Strongly consistent reads of many items (100 per call, unprocessed keys retried). */
  async batchGet(pks: readonly string[]): Promise<Map<string, Item>> {
    const found = new Map<string, Item>()
    const unique = [...new Set(pks)]
    for (let start = 0; start < unique.length; start += 100) {
      let keys: Item[] = unique.slice(start, start + 100).map((pk) => ({ pk: S(pk) }))
      for (let attempt = 0; keys.length > 0; attempt++) {
        if (attempt > 0) await backoff(attempt)
        const result = await this.#send(() =>
          this.client.send(
            new BatchGetItemCommand({
              RequestItems: { [this.tableName]: { Keys: keys, ConsistentRead: true } },
            }),
          ),
        )
        for (const item of result.Responses?.[this.tableName] ?? []) {
          const pk = item.pk?.S
          if (pk !== undefined) found.set(pk, item)
        }
        keys = (result.UnprocessedKeys?.[this.tableName]?.Keys ?? []) as Item[]
      }
    }
    return found
  }
}

/** A short, growing, jittered pause before retrying throttled or conflicting work. */
export const backoff = (attempt: number): Promise<void> =>
  new Promise((resolve) =>
    setTimeout(resolve, Math.min(1_000, 10 * 2 ** attempt) * (0.5 + Math.random() / 2)),
  )

/** Runs `fn` over `items` with at most `concurrency` calls in flight; results in input order. */
export const mapLimit = async <T, R>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> => {
  const results = new Array<R>(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const index = next++
      results[index] = await fn(items[index] as T, index)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker))
  return results
}
