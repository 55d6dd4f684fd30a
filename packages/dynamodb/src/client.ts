import { randomUUID } from 'node:crypto'
import {
  type AttributeValue,
  BatchGetItemCommand,
  DeleteItemCommand,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  type TransactWriteItem,
  TransactWriteItemsCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb'
import { type AmbientTransactions, type StatusCountRows, ValidationError } from '@txbox/core'
import type { ResolvedOptions } from './dynamodb-options.js'
import {
  ADAPTER,
  classifyDynamoDbError,
  isConditionalCheckFailed,
  isTransactionCanceled,
  isTransientConflict,
} from './errors.js'
import { STATUS_INDEX, shardOf, timeKey } from './keys.js'
import { type Item, N, S } from './rows.js'

/** DynamoDB's limit of actions in one TransactWriteItems call. */
export const MAX_TRANSACTION_ACTIONS = 100
/**
 * The item bytes one TransactWriteItems of the adapter's own may carry: DynamoDB refuses a
 * request over 4 MB, which counts the JSON around the items too, so some room is kept.
 */
export const MAX_TRANSACTION_ITEM_BYTES = 3_500_000

/**
 * What became of each put of a cancelled transaction (none of them was written):
 * `stored` with the item that held the key (the condition failed), `retry` when the put was
 * fine or lost a race with another transaction on its item.
 */
export type CancelledPut = { outcome: 'stored'; item: Item | undefined } | { outcome: 'retry' }

/** Why one action of a cancelled transaction failed, with the item it met when its condition was false (ALL_OLD). */
export interface CancellationReason {
  code: string
  item: Item | undefined
}

/** Cancellation reasons that mean "try again": another transaction held the item, or throttling. */
export const RETRY_CODES = new Set([
  'None',
  'TransactionConflict',
  'ThrottlingError',
  'ProvisionedThroughputExceeded',
])
/** Conditional writes in flight at once for one bulk call (claim, markManyAsSent, a sweep page...). */
export const WRITE_CONCURRENCY = 16
/** Index entries read per page by a sweep (cleanup, resetStale). */
const SWEEP_PAGE = 1_000

/** Expression values by placeholder (`:now` → value). Only the ones an expression uses are sent. */
export type Values = Record<string, AttributeValue>

/**
 * The `#name` placeholders an expression uses, each mapped to the attribute of the same
 * name. Every attribute is written as `#name` (several, like `status`, are reserved words),
 * and DynamoDB rejects unused entries, so the map is derived from the expressions.
 */
const namesOf = (...expressions: (string | undefined)[]): Record<string, string> | undefined => {
  const names: Record<string, string> = {}
  for (const expression of expressions) {
    if (expression === undefined) continue
    for (const match of expression.matchAll(/#([A-Za-z0-9_]+)/g)) names[`#${match[1]}`] = match[1] ?? ''
  }
  return Object.keys(names).length === 0 ? undefined : names
}

/** The subset of `values` an expression uses (DynamoDB rejects unused values too). */
const valuesOf = (values: Values, ...expressions: (string | undefined)[]): Values | undefined => {
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

/** A query on one index partition. */
interface QuerySpec {
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

/** A query on one shard of an index, without paging state. */
type ShardQuery = (shard: number) => Omit<QuerySpec, 'limit' | 'startKey' | 'countOnly'>

/** The partition `pkOf(shard)` of the status index (`gsi2`), only entries sorted below `skBelow` when given. */
const statusQuery =
  (pkOf: (shard: number) => string, skBelow?: string): ShardQuery =>
  (shard) => ({ index: STATUS_INDEX, pkName: 'gsi2pk', pk: pkOf(shard), skName: 'gsi2sk', skBelow })

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

/**
 * The `{ tx }` of this adapter, checked before any I/O: a `TransactWriteItem[]` the caller
 * later hands to `TransactWriteItemsCommand` with its own actions.
 */
const collectorOf = (tx: TransactWriteItem[] | undefined): TransactWriteItem[] | undefined => {
  if (tx !== undefined && !Array.isArray(tx)) {
    throw new ValidationError(
      ADAPTER,
      'tx must be a TransactWriteItem[] collector (an array you pass to TransactWriteItemsCommand)',
    )
  }
  return tx
}

const targetKey = (action: TransactWriteItem): { table: string | undefined; pk: string | undefined } => {
  if (action.Put) return { table: action.Put.TableName, pk: action.Put.Item?.pk?.S }
  const operation = action.Update ?? action.Delete ?? action.ConditionCheck
  return { table: operation?.TableName, pk: operation?.Key?.pk?.S }
}

/**
 * What both repositories of one store run on: their table, shards, clock and TTL setting,
 * and every DynamoDB call they make: conditional single-item writes, the `{ tx }`
 * collector, strongly consistent reads, and queries across the shards of an index. A false
 * condition is an answer (`false` / `undefined`: the item was taken or is not there), never
 * an error; every other failure propagates to the kernel, which classifies it.
 */
export class DynamoDbContext {
  readonly options: ResolvedOptions
  readonly #ambient: AmbientTransactions<TransactWriteItem[]> | undefined

  /** `ambient`: the store's `store.transaction`, whose collector `{ tx }`-less writes join. */
  constructor(options: ResolvedOptions, ambient?: AmbientTransactions<TransactWriteItem[]>) {
    this.options = options
    this.#ambient = ambient
  }

  /** The kernel settings both repositories share. */
  get settings() {
    return {
      adapter: ADAPTER,
      clock: this.options.clock,
      classify: classifyDynamoDbError,
      transaction: collectorOf,
      ambient: this.#ambient,
    } as const
  }

  get tableName(): string {
    return this.options.tableName
  }

  /** The index shard of an event (stable across processes and releases). */
  shardOf(eventId: string): number {
    return shardOf(eventId, this.options.shards)
  }

  /**
   * The update that makes an event final (`sent`, `processed`) at `nowMs`: the status, its
   * time attribute, its status-index entry sorted by that time, `remove`d attributes, and
   * with `ttlDays` an `expiresAt` (epoch seconds) that many days later for DynamoDB's TTL.
   */
  finalSpec(
    status: string,
    timeAttribute: string,
    statusPk: string,
    nowMs: number,
    remove: string,
  ): UpdateSpec {
    const { ttlDays } = this.options
    const values: Values = {
      ':final': S(status),
      ':now': N(nowMs),
      ':g2pk': S(statusPk),
      ':g2sk': S(timeKey(nowMs)),
    }
    const set = `#status = :final, #${timeAttribute} = :now, #gsi2pk = :g2pk, #gsi2sk = :g2sk`
    if (ttlDays === undefined) return { update: `SET ${set} REMOVE ${remove}, #expiresAt`, values }
    values[':exp'] = N(Math.ceil((nowMs + ttlDays * 86_400_000) / 1000))
    return { update: `SET ${set}, #expiresAt = :exp REMOVE ${remove}`, values }
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
      this.options.client.send(
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

  /** True when the item is stored (a strongly consistent read of its key alone). */
  async exists(pk: string): Promise<boolean> {
    return (await this.get(pk, '#pk')) !== undefined
  }

  /** A conditional put; false when the condition failed. */
  async put(item: Item, condition: string): Promise<boolean> {
    try {
      await this.#send(() =>
        this.options.client.send(
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

  /**
   * Puts `items` (at most 100, distinct keys) in one TransactWriteItems, each only while its
   * key is not stored: all are written (`undefined`) or none, and then each put says why
   * (`CancelledPut`; a failed condition returns the stored item, DynamoDB's ALL_OLD). Any
   * other cancellation reason (validation, size) is thrown.
   */
  async putAllNew(items: readonly Item[], condition: string): Promise<CancelledPut[] | undefined> {
    try {
      await this.options.client.send(
        new TransactWriteItemsCommand({
          TransactItems: items.map((item) => {
            const action = this.putAction(item, condition)
            if (action.Put) action.Put.ReturnValuesOnConditionCheckFailure = 'ALL_OLD'
            return action
          }),
        }),
      )
      return undefined
    } catch (error) {
      if (!isTransactionCanceled(error)) throw error
      const reasons = (error as { CancellationReasons?: { Code?: string; Item?: Item }[] })
        .CancellationReasons
      if (reasons?.length !== items.length) throw error
      return reasons.map((reason) => {
        const code = reason.Code ?? 'None'
        if (code === 'ConditionalCheckFailed') return { outcome: 'stored', item: reason.Item }
        if (RETRY_CODES.has(code)) return { outcome: 'retry' }
        throw error
      })
    }
  }

  /**
   * Sends `actions` in one TransactWriteItems (its own ClientRequestToken, so the SDK's
   * retry of a timed-out request cannot apply it twice): `undefined` when it committed,
   * else the reason of each action, in action order, and the error to rethrow when a
   * reason is not one the caller handles. Any failure that is not a cancellation is thrown.
   */
  async transact(
    actions: TransactWriteItem[],
  ): Promise<{ reasons: CancellationReason[]; error: unknown } | undefined> {
    try {
      await this.options.client.send(
        new TransactWriteItemsCommand({ TransactItems: actions, ClientRequestToken: randomUUID() }),
      )
      return undefined
    } catch (error) {
      if (!isTransactionCanceled(error)) throw error
      const reasons = (error as { CancellationReasons?: { Code?: string; Item?: Item }[] })
        .CancellationReasons
      if (reasons?.length !== actions.length) throw error
      return { reasons: reasons.map((reason) => ({ code: reason.Code ?? 'None', item: reason.Item })), error }
    }
  }

  /** The `ConditionCheck` action of a transaction: the transaction commits only while `condition` holds on `pk`. */
  conditionCheckAction(pk: string, condition: string, values: Values): TransactWriteItem {
    return {
      ConditionCheck: {
        TableName: this.tableName,
        Key: { pk: S(pk) },
        ConditionExpression: condition,
        ExpressionAttributeNames: namesOf(condition),
        ExpressionAttributeValues: valuesOf(values, condition),
        ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
      },
    }
  }

  /** A conditional update returning the new item, or undefined when the condition failed. */
  async update(pk: string, spec: UpdateSpec): Promise<Item | undefined> {
    try {
      const result = await this.#send(() =>
        this.options.client.send(
          new UpdateItemCommand({ ...this.#updateInput(pk, spec), ReturnValues: 'ALL_NEW' }),
        ),
      )
      return result.Attributes ?? {}
    } catch (error) {
      if (isConditionalCheckFailed(error)) return undefined
      throw error
    }
  }

  /** A conditional delete; false when the condition failed. */
  async delete(pk: string, condition: string, values: Values): Promise<boolean> {
    try {
      await this.#send(() =>
        this.options.client.send(
          new DeleteItemCommand({
            TableName: this.tableName,
            Key: { pk: S(pk) },
            ConditionExpression: condition,
            ExpressionAttributeNames: namesOf(condition),
            ExpressionAttributeValues: valuesOf(values, condition),
          }),
        ),
      )
      return true
    } catch (error) {
      if (isConditionalCheckFailed(error)) return false
      throw error
    }
  }

  /**
   * The `Update` action of a transaction, for `{ tx }` collectors. With `storedOnFailure`, a
   * failed condition returns the item it met in the cancellation reasons (ALL_OLD), which
   * tells why the transaction was cancelled.
   */
  updateAction(pk: string, spec: UpdateSpec, storedOnFailure = false): TransactWriteItem {
    const input = this.#updateInput(pk, spec)
    return { Update: storedOnFailure ? { ...input, ReturnValuesOnConditionCheckFailure: 'ALL_OLD' } : input }
  }

  #updateInput(pk: string, spec: UpdateSpec) {
    return {
      TableName: this.tableName,
      Key: { pk: S(pk) },
      UpdateExpression: spec.update,
      ConditionExpression: spec.condition,
      ExpressionAttributeNames: namesOf(spec.update, spec.condition),
      ExpressionAttributeValues: valuesOf(spec.values ?? {}, spec.update, spec.condition),
    }
  }

  /** The `Put` action of a transaction (with `storedOnFailure`, a failed condition returns the stored item). */
  putAction(item: Item, condition: string, storedOnFailure = false): TransactWriteItem {
    return {
      Put: {
        TableName: this.tableName,
        Item: item,
        ConditionExpression: condition,
        ExpressionAttributeNames: namesOf(condition),
        ...(storedOnFailure ? { ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const } : {}),
      },
    }
  }

  /**
   * Checks, before any I/O, that `pks` can join the collector: the transaction stays within
   * 100 actions, and no item gets a second action (DynamoDB rejects a transaction that
   * touches one item twice with a ValidationException for the whole call, which would hide
   * which event was the duplicate).
   */
  checkCollector(tx: readonly TransactWriteItem[], pks: readonly string[]): void {
    if (tx.length + pks.length > MAX_TRANSACTION_ACTIONS) {
      throw new ValidationError(
        ADAPTER,
        `the transaction already holds ${tx.length} actions; adding ${pks.length} would exceed DynamoDB's limit of ${MAX_TRANSACTION_ACTIONS} actions per TransactWriteItems`,
      )
    }
    const wanted = new Set(pks)
    for (const action of tx) {
      const { table, pk } = targetKey(action)
      if (table === this.tableName && pk !== undefined && wanted.has(pk)) {
        throw new ValidationError(
          ADAPTER,
          `the transaction already has an action on item ${JSON.stringify(pk)}: DynamoDB allows one action per item in a transaction`,
        )
      }
    }
  }

  async #query(spec: QuerySpec): Promise<{ items: Item[]; count: number; lastKey: Item | undefined }> {
    const keyCondition =
      spec.skBelow === undefined
        ? `#${spec.pkName} = :ipk`
        : `#${spec.pkName} = :ipk AND #${spec.skName} < :isk`
    const values: Values = { ...spec.values, ':ipk': S(spec.pk) }
    if (spec.skBelow !== undefined) values[':isk'] = S(spec.skBelow)
    const result = await this.#send(() =>
      this.options.client.send(
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
          this.options.client.send(
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

  /**
   * The items behind index `entries`, in their order, kept only when the item itself (read
   * strongly consistent) still passes `keep`: the index is eventually consistent.
   */
  async confirm(entries: readonly Item[], keep: (item: Item) => boolean): Promise<Item[]> {
    const items = await this.batchGet(entries.map((entry) => entry.pk?.S ?? ''))
    return entries
      .map((entry) => items.get(entry.pk?.S ?? ''))
      .filter((item): item is Item => item !== undefined && keep(item))
  }

  #shardList(): number[] {
    return Array.from({ length: this.options.shards }, (_, shard) => shard)
  }

  /**
   * The first `want` index entries across every shard, in sort-key order. Each shard is
   * queried in parallel and read only until it has `perShard` (default `want`) entries that
   * pass the filter and are not in `skip`: with the default no merged result can need more
   * than that from one shard. Pages start small and double, because entries the filter
   * drops are read and paid for too.
   */
  async firstAcrossShards(
    query: ShardQuery,
    want: number,
    skip?: ReadonlySet<string>,
    perShard = want,
  ): Promise<Item[]> {
    const results = await Promise.all(
      this.#shardList().map(async (shard) => {
        const spec = query(shard)
        const found: Item[] = []
        let pageSize = Math.min(1_000, perShard + (skip?.size ?? 0) + 10)
        let startKey: Item | undefined
        do {
          const page = await this.#query({ ...spec, limit: pageSize, startKey })
          for (const item of page.items) {
            const pk = item.pk?.S
            if (pk !== undefined && !skip?.has(pk)) found.push(item)
          }
          startKey = page.lastKey
          pageSize = Math.min(1_000, pageSize * 2)
        } while (found.length < perShard && startKey !== undefined)
        return { skName: spec.skName, found }
      }),
    )
    const skName = results[0]?.skName ?? ''
    return results
      .flatMap((shard) => shard.found)
      .sort(
        (a, b) => compare(a[skName]?.S ?? '', b[skName]?.S ?? '') || compare(a.pk?.S ?? '', b.pk?.S ?? ''),
      )
      .slice(0, want)
  }

  /** `(status, count)` of each status, counted in its status-index partitions (Select COUNT, all pages). */
  async countStatuses<Status extends string>(
    statuses: readonly Status[],
    pkOf: (status: Status, shard: number) => string,
  ): Promise<StatusCountRows> {
    return Promise.all(
      statuses.map(async (status) => {
        const query = statusQuery((shard) => pkOf(status, shard))
        const counts = await Promise.all(
          this.#shardList().map(async (shard) => {
            let total = 0
            let startKey: Item | undefined
            do {
              const page = await this.#query({ ...query(shard), startKey, countOnly: true })
              total += page.count
              startKey = page.lastKey
            } while (startKey !== undefined)
            return total
          }),
        )
        return [status, counts.reduce((sum, count) => sum + count, 0)] as const
      }),
    )
  }

  /** The `failed` items of the status partitions `pkOf(shard)`, the first `limit` in their index order. */
  async failedItems(pkOf: (shard: number) => string, limit: number): Promise<Item[]> {
    const entries = await this.firstAcrossShards(statusQuery(pkOf), limit)
    return this.confirm(entries, (item) => item.status?.S === 'failed')
  }

  /**
   * One sweep step: runs `act` (a conditional write that re-checks on the item what the
   * eventually consistent index claims) on the entries of the status partitions
   * `pkOf(shard)` sorted before `cutoffMs`, shard after shard, until `limit` acted
   * or the entries ran out; answers how many acted. Shards are visited one after the other
   * so that the step never acts on more than `limit` items; within a shard, paging follows
   * LastEvaluatedKey, so an entry the index still shows after it was moved or deleted is
   * skipped, not read again, and a step that answers less than `limit` found nothing more.
   */
  async sweep(
    pkOf: (shard: number) => string,
    cutoffMs: number,
    limit: number,
    act: (entry: Item) => Promise<boolean>,
  ): Promise<number> {
    const query = statusQuery(pkOf, timeKey(Math.ceil(cutoffMs)))
    let done = 0
    for (const shard of this.#shardList()) {
      let startKey: Item | undefined
      do {
        if (done >= limit) return done
        const page = await this.#query({
          ...query(shard),
          limit: Math.min(SWEEP_PAGE, limit - done),
          startKey,
        })
        const acted = await mapLimit(page.items, WRITE_CONCURRENCY, act)
        done += acted.filter(Boolean).length
        startKey = page.lastKey
      } while (startKey !== undefined)
    }
    return done
  }

  /**
   * One cleanup step: deletes, one conditional delete per entry, the items of the status
   * partitions `pkOf(shard)` whose `timeAttribute` is before `cutoff`, at most `limit`.
   * Conditional deletes rather than BatchWriteItem: the same WCU per item, and the
   * condition re-checks status and time on the item, which the eventually consistent index
   * cannot promise, so cleanup never deletes an event that moved on.
   */
  deleteBefore(
    pkOf: (shard: number) => string,
    status: string,
    timeAttribute: string,
    cutoff: Date,
    limit: number,
  ): Promise<number> {
    const cutoffMs = cutoff.getTime()
    return this.sweep(pkOf, cutoffMs, limit, (entry) =>
      this.delete(entry.pk?.S ?? '', `#status = :status AND #${timeAttribute} < :cutoff`, {
        ':status': S(status),
        ':cutoff': N(cutoffMs),
      }),
    )
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
