import { randomUUID } from 'node:crypto'
import type { Collection, IndexDescription } from 'mongodb'
import { insertUnordered, isDuplicateKey } from './inserts.js'

/*
 * FerretDB v1 workarounds. Each is used only when server detection says so (or the
 * caller chose `writeGuard: 'lock-collection'`); a real MongoDB takes the plain path.
 */

/** A lock of `<prefix>locks`: `_id` = `<rev>|<kind>|<document _id>`. */
export interface LockDocument {
  _id: string
  /** Wall-clock time the lock was taken, to recover a lock whose holder died. */
  at: Date
}

/** A versioned write as the lock guard sees it. */
interface VersionedWrite {
  readonly id: string
  readonly rev: string
}

/** After this long a lock's holder is presumed dead and the document is freed. */
const LOCK_TTL_MS = 30_000

/**
 * FerretDB v1 reads, modifies and writes back a document in separate statements, so a
 * filter on `{ _id, rev }` alone does not exclude a concurrent writer. Each write first
 * inserts the lock `<rev>|<kind>|<_id>`: a version is written at most once because only one
 * insert of its lock succeeds, and the winner's update still filters on `rev`, so a writer
 * holding the lock of an old version matches nothing. The lock is deleted after the update
 * returned, when the version it names is already gone; if the holder died in between, the
 * next writer frees the document after {@link LOCK_TTL_MS}.
 */
export class VersionLocks {
  readonly #locks: Collection<LockDocument>
  readonly #documents: (kind: string) => Collection<{ _id: string; rev: string }>

  constructor(
    locks: Collection<LockDocument>,
    documents: (kind: string) => Collection<{ _id: string; rev: string }>,
  ) {
    this.#locks = locks
    this.#documents = documents
  }

  /** Runs `apply` on the writes whose version lock this caller took; the others are not applied. */
  async guard<W extends VersionedWrite>(
    kind: string,
    writes: readonly W[],
    apply: (granted: readonly W[]) => Promise<Set<string>>,
  ): Promise<Set<string>> {
    const locks: LockDocument[] = writes.map((write) => ({ _id: lockId(kind, write), at: new Date() }))
    const taken = await insertUnordered(this.#locks, locks)
    if (taken.size > 0)
      await this.#freeAbandoned(
        kind,
        writes.filter((_, index) => taken.has(index)),
      )
    const granted = writes.filter((_, index) => !taken.has(index))
    if (granted.length === 0) return new Set()
    const applied = await apply(granted)
    const held = locks.filter((_, index) => !taken.has(index)).map((lock) => lock._id)
    await this.#locks.deleteMany({ _id: { $in: held } })
    return applied
  }

  /**
   * A lock older than the TTL belongs to a writer that died between its lock and its
   * update. One recoverer (the unique `<lock>|free` insert decides which) moves the document
   * to a new version, which makes the dead lock meaningless, then removes both locks.
   */
  async #freeAbandoned(kind: string, writes: readonly VersionedWrite[]): Promise<void> {
    const ids = writes.map((write) => lockId(kind, write))
    const stale = await this.#locks
      .find({ _id: { $in: ids }, at: { $lt: new Date(Date.now() - LOCK_TTL_MS) } })
      .toArray()
    for (const lock of stale) {
      const write = writes.find((candidate) => lockId(kind, candidate) === lock._id)
      if (!write) continue
      const freeId = `${lock._id}|free`
      try {
        await this.#locks.insertOne({ _id: freeId, at: new Date() })
      } catch (error) {
        if (isDuplicateKey(error)) continue
        throw error
      }
      await this.#documents(kind).updateOne(
        { _id: write.id, rev: write.rev },
        { $set: { rev: randomUUID() } },
      )
      await this.#locks.deleteMany({ _id: { $in: [lock._id, freeId] } })
    }
  }
}

const lockId = (kind: string, write: VersionedWrite): string => `${write.rev}|${kind}|${write.id}`

/**
 * Creates the indexes that are missing, and only those: FerretDB v1.24 drops the
 * connection on a createIndexes whose index already exists, so an identical spec is not
 * sent twice. A concurrent migrate() may create one in between: the next pass sees it.
 */
export const createMissingIndexes = async (
  collection: Collection,
  indexes: readonly IndexDescription[],
): Promise<void> => {
  for (let attempt = 1; ; attempt++) {
    const existing = await collection
      .listIndexes()
      .toArray()
      .catch((error: unknown) => {
        // 26 NamespaceNotFound: the collection does not exist yet.
        if ((error as { code?: unknown }).code === 26) return []
        throw error
      })
    const names = new Set(existing.map((index) => index.name as unknown))
    const missing = indexes.filter((index) => !names.has(index.name))
    if (missing.length === 0) return
    try {
      await collection.createIndexes(missing)
      return
    } catch (error) {
      if (attempt >= 3) throw error
    }
  }
}
