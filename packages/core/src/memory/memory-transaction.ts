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
