import { describeHandle } from '../describe-handle.js'
import { ValidationError } from '../errors.js'

/**
 * The memory store's transaction handle: writes made with `{ tx }` are buffered and applied
 * in order on `commit()`; `rollback()` drops them. Like a database transaction, nothing is
 * visible to other readers before commit.
 */
export class MemoryTransaction {
  #writes: (() => void)[] = []
  #state: 'open' | 'committed' | 'rolled back' = 'open'
  readonly #staged = new WeakMap<object, Map<string, unknown>>()
  #store: object | undefined

  /** `store`: the memory store that opened it, whose repositories alone accept it. */
  constructor(store?: object) {
    this.#store = store
  }

  /**
   * Marks a transaction opened for `store` (a `store.transaction` begun by its driver); one
   * that already belongs to a store keeps it.
   */
  openedBy(store: object): this {
    this.#store ??= store
    return this
  }

  /**
   * Refuses, before any write, a transaction another memory store opened: each store is its
   * own database, and one transaction commits in one database.
   */
  assertUsableBy(store: object): void {
    if (this.#store !== undefined && this.#store !== store)
      throw new ValidationError(
        'memory',
        'tx is a transaction another memory store opened: pass a transaction of this store (its begin(), or the tx of its store.transaction)',
      )
  }

  /** `open` until `commit()` or `rollback()`. */
  get state(): 'open' | 'committed' | 'rolled back' {
    return this.#state
  }

  /**
   * What `owner` (a repository) created in this transaction so far, by event id: a later call
   * in the same transaction must see its own uncommitted writes, as a database session does.
   */
  staged<T>(owner: object): Map<string, T> {
    let staged = this.#staged.get(owner)
    if (!staged) {
      staged = new Map()
      this.#staged.set(owner, staged)
    }
    return staged as Map<string, T>
  }

  /** Queues a write to apply at commit. */
  enlist(write: () => void): void {
    if (this.#state !== 'open')
      throw new ValidationError('memory', `the transaction is already ${this.#state}`)
    this.#writes.push(write)
  }

  /** Applies every buffered write, in order. */
  commit(): void {
    if (this.#state !== 'open')
      throw new ValidationError('memory', `the transaction is already ${this.#state}`)
    this.#state = 'committed'
    for (const write of this.#writes) write()
    this.#writes = []
  }

  /** Drops every buffered write. */
  rollback(): void {
    if (this.#state !== 'open')
      throw new ValidationError('memory', `the transaction is already ${this.#state}`)
    this.#state = 'rolled back'
    this.#writes = []
  }
}

/**
 * The `{ tx }` check of a memory store's repositories: without `identity` (a repository built
 * on its own) every transaction is accepted.
 */
export const transactionsOf = (
  identity: object | undefined,
): ((tx: MemoryTransaction | undefined) => MemoryTransaction | undefined) | undefined =>
  identity === undefined
    ? undefined
    : (tx) => {
        if (tx === undefined) return tx
        if (typeof (tx as Partial<MemoryTransaction> | null)?.assertUsableBy !== 'function')
          throw new ValidationError(
            'memory',
            `tx must be a MemoryTransaction (the store's begin(), or the tx of its store.transaction); got ${describeHandle(tx)}`,
          )
        tx.assertUsableBy(identity)
        return tx
      }
