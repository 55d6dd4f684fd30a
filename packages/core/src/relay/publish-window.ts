/**
 * The relay's bound on publishes in flight, shared by every batch it holds: a counting
 * semaphore whose waiters are served in arrival order, so a batch claimed earlier gets its
 * slots before a later one queued behind it.
 */
export class PublishWindow {
  readonly #size: number
  #used = 0
  readonly #waiters: (() => void)[] = []

  constructor(size: number) {
    this.#size = size
  }

  /** Publishes holding a slot now. */
  get used(): number {
    return this.#used
  }

  /**
   * Takes a slot. Returns `undefined` when one was free (the caller goes on without
   * yielding), else a promise that resolves once a slot was handed over.
   */
  acquire(): Promise<void> | undefined {
    if (this.#used < this.#size) {
      this.#used++
      return undefined
    }
    return new Promise<void>((resolve) => this.#waiters.push(resolve))
  }

  /** Gives a slot back: to the longest waiter if there is one (the count stays), else to the pool. */
  release(): void {
    const next = this.#waiters.shift()
    if (next) next()
    else this.#used--
  }
}
