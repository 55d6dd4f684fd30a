import { randomUUID } from 'node:crypto'
import { type EnqueueParams, loadMigrations } from '@txbox/core'
import { type Collection, type Db, type IndexDescription, MongoClient } from 'mongodb'
import { collectionNames } from '../src/mongodb-options.js'
import type { OutboxDocument } from '../src/rows.js'

/** The server the integration tests run against; unset skips them (unless TXBOX_REQUIRE_ALL=1). */
export const url = process.env.TXBOX_MONGODB_URL
if (!url && process.env.TXBOX_REQUIRE_ALL === '1') {
  throw new Error(
    'TXBOX_REQUIRE_ALL=1 but TXBOX_MONGODB_URL is not set: start it with scripts/services.sh up mongodb',
  )
}

export const keyed = (eventId: string, orderingKey: string): EnqueueParams => ({
  eventId,
  subject: 'orders.events',
  payload: '{}',
  orderingKey,
})

export const lease = { leaseMs: 60_000 }

/** The ids of events, in the order given. */
export const ids = (events: readonly { eventId: string }[]): string[] => events.map((event) => event.eventId)

/**
 * Clients and collection prefixes of one test file: each `connect()` is a client of its own
 * (another process, as far as the server can tell), and `close()` drops every collection of
 * every prefix handed out, then closes the clients.
 */
export class TestServer {
  readonly #clients: MongoClient[] = []
  readonly #prefixes: string[] = []

  async connect(options?: ConstructorParameters<typeof MongoClient>[1]): Promise<Db> {
    const client = await new MongoClient(url ?? '', options).connect()
    this.#clients.push(client)
    return client.db()
  }

  freshPrefix(): string {
    const prefix = `t_${randomUUID().replaceAll('-', '').slice(0, 12)}_`
    this.#prefixes.push(prefix)
    return prefix
  }

  async close(): Promise<void> {
    const [first] = this.#clients
    if (first)
      for (const prefix of this.#prefixes)
        for (const name of [...Object.values(collectionNames(prefix)), `${prefix}inbox_streams`])
          await first
            .db()
            .collection(name)
            .drop()
            .catch(() => {})
    for (const client of this.#clients) await client.close()
  }
}

/** A pause one side of a race waits in until the test opens it; `reached` resolves when it got there. */
export const gate = () => {
  let reach = () => {}
  let open = () => {}
  const reached = new Promise<void>((resolve) => {
    reach = resolve
  })
  const opened = new Promise<void>((resolve) => {
    open = resolve
  })
  return {
    reached,
    open,
    /** Called by the paused side. */
    wait: async (): Promise<void> => {
      reach()
      await opened
    },
  }
}

type Method = (...args: unknown[]) => unknown

/**
 * `db` whose collection `name` runs `wrap(call, args)` for every call of `method`
 * (`call()` is the real call): how a test stops one side of a race at a chosen command,
 * without a sleep.
 */
export const interceptCalls = (
  db: Db,
  name: string,
  method: string,
  wrap: (call: () => unknown, args: unknown[]) => unknown,
): Db =>
  new Proxy(db, {
    get(target, property, receiver) {
      if (property !== 'collection') return Reflect.get(target, property, receiver)
      return (collectionName: string) => {
        const collection = target.collection(collectionName)
        if (collectionName !== name) return collection
        return new Proxy(collection, {
          get(inner, member, innerReceiver) {
            const value = Reflect.get(inner, member, innerReceiver)
            if (member !== method || typeof value !== 'function') return value
            return (...args: unknown[]) => wrap(() => (value as Method).apply(inner, args), args)
          },
        }) as Collection
      }
    },
  }) as Db

/**
 * `db` whose collection `name` answers each `find(filter)...toArray()` through
 * `onRead(filter, read)`, where `read()` runs the query: the test may act before the query
 * runs, or after it answered and before the caller goes on with the answer.
 */
export const interceptReads = (
  db: Db,
  name: string,
  onRead: (filter: Record<string, unknown>, read: () => Promise<unknown[]>) => Promise<unknown[]>,
): Db =>
  interceptCalls(db, name, 'find', (call, [filter]) => {
    const cursor = call() as { toArray(): Promise<unknown[]> }
    return new Proxy(cursor, {
      get(base, member, baseReceiver) {
        const original = Reflect.get(base, member, baseReceiver)
        if (member !== 'toArray' || typeof original !== 'function') return original
        return () =>
          onRead((filter ?? {}) as Record<string, unknown>, () =>
            (original as () => Promise<unknown[]>).apply(base),
          )
      },
    })
  })

/** A paused Db of {@link pauseAfterRead} / {@link pauseAfterCall}: `pause.reached` once it stopped. */
export interface PausedDb {
  readonly db: Db
  readonly pause: ReturnType<typeof gate>
}

/**
 * `db` that stops once, right after the first read of collection `name` that `stops` picks
 * has answered (before its caller goes on with the answer), until `pause.open()`.
 */
export const pauseAfterRead = (
  db: Db,
  name: string,
  stops: (filter: Record<string, unknown>) => boolean,
): PausedDb => {
  const pause = gate()
  let first = true
  const paused = interceptReads(db, name, async (filter, read) => {
    const answer = await read()
    if (first && stops(filter)) {
      first = false
      await pause.wait()
    }
    return answer
  })
  return { db: paused, pause }
}

/** `db` that stops once, right after the first call of `method` on collection `name` has answered. */
export const pauseAfterCall = (db: Db, name: string, method: string): PausedDb => {
  const pause = gate()
  let first = true
  const paused = interceptCalls(db, name, method, async (call) => {
    const answer = await call()
    if (first) {
      first = false
      await pause.wait()
    }
    return answer
  })
  return { db: paused, pause }
}

/** The migration files, as the package ships them. */
export const migrationFiles = () => loadMigrations(new URL('../migrations/', import.meta.url))

/**
 * What `migrate()` of the release whose schema was `version` left under `prefix`: the
 * collections and indexes of the first `version` files, and `{ _id: 'schema', version }`.
 */
export const schemaThrough = async (db: Db, prefix: string, version: number): Promise<void> => {
  for (const migration of migrationFiles().slice(0, version)) {
    const { collections } = JSON.parse(migration.body) as {
      collections?: Record<string, IndexDescription[]>
    }
    for (const [key, indexes] of Object.entries(collections ?? {})) {
      if (indexes.length > 0) await db.collection(`${prefix}${key}`).createIndexes(indexes)
      else await db.createCollection(`${prefix}${key}`)
    }
  }
  await db
    .collection(collectionNames(prefix).meta)
    .insertOne({ _id: 'schema' as never, version, migratedAt: new Date('2026-01-02T03:04:05.000Z') })
}

/**
 * Outbox documents as version 4 stored them (no `holding` field), enqueued at `now` in
 * call order: `document(id, key, keySeq, status, more)`; `key` undefined for an unkeyed one.
 */
export const version4Documents = (now: Date) => {
  let seq = 0
  return (
    _id: string,
    orderingKey: string | undefined,
    keySeq: number | undefined,
    status: OutboxDocument['status'],
    more: Partial<OutboxDocument> = {},
  ): OutboxDocument => ({
    _id,
    subject: 's',
    payload: 'p',
    status,
    enqueuedAt: now,
    retryCount: 0,
    availableAt: now,
    seq: `${String(now.getTime()).padStart(15, '0')}.${String(seq++).padStart(9, '0')}`,
    rev: randomUUID(),
    ...(orderingKey === undefined || keySeq === undefined ? {} : { orderingKey, keySeq }),
    ...more,
  })
}
