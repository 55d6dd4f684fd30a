/**
 * Whose turn it is on the one better-sqlite3 connection of a store. SQLite has one
 * transaction per connection, and `store.transaction` keeps its transaction open across
 * the `await`s of the caller's function: any statement another async context ran on the
 * connection meanwhile would join that transaction and commit or roll back with it. So
 * the store's operations take turns, like queries on a pool of one connection: a
 * `store.transaction` holds the connection from BEGIN to COMMIT or ROLLBACK, the calls
 * inside it (its async context) run at once, and every other call of the store waits.
 */
export class ConnectionTurns {
  #taken = false
  #transactionOpen = false
  readonly #waiting: (() => void)[] = []
  readonly #insideTransaction: () => boolean

  /** `insideTransaction`: whether the calling async context runs inside the open `store.transaction`. */
  constructor(insideTransaction: () => boolean) {
    this.#insideTransaction = insideTransaction
  }

  /** True while a `store.transaction` holds the connection. */
  get transactionOpen(): boolean {
    return this.#transactionOpen
  }

  /** True when the calling async context is inside the `store.transaction` holding the connection. */
  holdsTransaction(): boolean {
    return this.#transactionOpen && this.#insideTransaction()
  }

  /** Runs one store operation in its turn (at once inside the open `store.transaction`). */
  async exclusive<T>(run: () => Promise<T>): Promise<T> {
    if (this.holdsTransaction()) return run()
    await this.#take()
    try {
      return await run()
    } finally {
      this.#give()
    }
  }

  /** Takes the connection for a `store.transaction`, until {@link endTransaction}. */
  async beginTransaction(): Promise<void> {
    await this.#take()
    this.#transactionOpen = true
  }

  endTransaction(): void {
    if (!this.#transactionOpen) return
    this.#transactionOpen = false
    this.#give()
  }

  #take(): Promise<void> {
    if (!this.#taken) {
      this.#taken = true
      return Promise.resolve()
    }
    // First come, first served: a waiting transaction is not overtaken by later calls.
    return new Promise((resolve) => this.#waiting.push(resolve))
  }

  /** Hands the connection to the next waiter directly, so nobody can slip in between. */
  #give(): void {
    const next = this.#waiting.shift()
    if (next === undefined) this.#taken = false
    else next()
  }
}
