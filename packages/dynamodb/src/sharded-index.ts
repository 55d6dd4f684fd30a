import type { Item } from './items.js'
import type { QuerySpec, TableClient } from './table-client.js'

/** A query on one shard of an index, without paging state. */
export type ShardQuery = (shard: number) => Omit<QuerySpec, 'limit' | 'startKey' | 'countOnly'>

const shardList = (shards: number): number[] => Array.from({ length: shards }, (_, shard) => shard)

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

/**
 * The first `want` index entries across every shard, in sort-key order. Each shard is
 * queried in parallel and read only until it has `perShard` (default `want`) entries that
 * pass the filter and are not in `skip`: with the default no merged result can need more
 * than that from one shard. Pages start small and double, because entries the filter
 * drops are read and paid for too.
 */
export const firstAcrossShards = async (
  table: TableClient,
  shards: number,
  query: ShardQuery,
  want: number,
  skip?: ReadonlySet<string>,
  perShard = want,
): Promise<Item[]> => {
  const results = await Promise.all(
    shardList(shards).map(async (shard) => {
      const spec = query(shard)
      const found: Item[] = []
      let pageSize = Math.min(1_000, perShard + (skip?.size ?? 0) + 10)
      let startKey: Item | undefined
      do {
        const page = await table.query({ ...spec, limit: pageSize, startKey })
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
    .sort((a, b) => compare(a[skName]?.S ?? '', b[skName]?.S ?? '') || compare(a.pk?.S ?? '', b.pk?.S ?? ''))
    .slice(0, want)
}

/** How many entries every shard holds (Select COUNT, all pages). */
export const countAcrossShards = async (
  table: TableClient,
  shards: number,
  query: ShardQuery,
): Promise<number> => {
  const counts = await Promise.all(
    shardList(shards).map(async (shard) => {
      let total = 0
      let startKey: Item | undefined
      do {
        const page = await table.query({ ...query(shard), startKey, countOnly: true })
        total += page.count
        startKey = page.lastKey
      } while (startKey !== undefined)
      return total
    }),
  )
  return counts.reduce((sum, count) => sum + count, 0)
}

/**
 * Visits every entry of every shard, `pageSize` at a time, and sums what `visit` returns.
 * Paging follows LastEvaluatedKey instead of re-querying from the start, so an entry the
 * eventually consistent index still shows after `visit` moved it is never visited twice
 * and the loop always ends. Bounded batches: cleanup and resetStale never touch more than
 * `pageSize` items per round trip of reads.
 */
export const forEachPageAcrossShards = async (
  table: TableClient,
  shards: number,
  query: ShardQuery,
  pageSize: number,
  visit: (items: Item[]) => Promise<number>,
): Promise<number> => {
  const totals = await Promise.all(
    shardList(shards).map(async (shard) => {
      let total = 0
      let startKey: Item | undefined
      do {
        const page = await table.query({ ...query(shard), limit: pageSize, startKey })
        if (page.items.length > 0) total += await visit(page.items)
        startKey = page.lastKey
      } while (startKey !== undefined)
      return total
    }),
  )
  return totals.reduce((sum, count) => sum + count, 0)
}
