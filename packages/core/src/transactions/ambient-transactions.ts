import { AsyncLocalStorage } from 'node:async_hooks'
import { StorageError, TxboxError, ValidationError } from '../errors.js'
import {
  type ClassifyStorageError,
  classifyUnknown,
  runStorageOperation,
  type StorageErrorReason,
} from '../kernel/storage-failure.js'
import { describe } from '../validation.js'
import type { TransactionDriver } from './transaction-driver.js'
import type { TransactionFunction, TransactionOptions } from './transaction-function.js'

/** Settings of {@link AmbientTransactions}. */
export interface AmbientTransactionsSettings<Tx> {
  /** The adapter's name: `[txbox] [<adapter>]` in every error. */
  readonly adapter: string
  readonly driver: TransactionDriver<Tx>
  /** The store's one driver-error classification (default: every error is `unknown`). */
  readonly classify?: ClassifyStorageError | undefined
}

/** The transaction one `run` opened, as the calls inside it see it. */
interface Frame<Tx> {
  readonly tx: Tx
  readonly attempt: number
  /** Set once the transaction committed or rolled back: a late call must not write through it. */
  ended: boolean
}

/** How one attempt ended. */
type Outcome<T> =
  | { readonly ok: true; readonly value: T }
  /** `final`: never run again (the transaction committed; only its release failed). */
  | { readonly ok: false; readonly error: unknown; readonly final?: true }

const OPTION_KEYS: readonly string[] = ['retries']

/**
 * The `store.transaction` that opened each single-use handle (see
 * `TransactionDriver.singleUse`), and whether it ended: one map for the process, so a store
 * recognises another store's handle.
 */
const openedBy = new WeakMap<
  object,
  { readonly transactions: AmbientTransactions<unknown>; ended: boolean }
>()

/**
 * The transactions a store runs itself (`store.transaction`), and the ambient one its
 * repositories join. One per store, shared by its outbox and inbox repositories: the
 * transaction of the `run` a call is made in is found through an AsyncLocalStorage, so two
 * concurrent `run`s never see each other's transaction.
 */
export class AmbientTransactions<Tx> {
  readonly adapter: string
  readonly #driver: TransactionDriver<Tx>
  readonly #classify: ClassifyStorageError
  readonly #frames = new AsyncLocalStorage<Frame<Tx>>()

  constructor(settings: AmbientTransactionsSettings<Tx>) {
    if (typeof settings !== 'object' || settings === null)
      throw new TypeError('AmbientTransactions needs { adapter, driver, classify? }')
    this.adapter = settings.adapter
    this.#driver = settings.driver
    this.#classify = settings.classify ?? classifyUnknown
  }

  /**
   * The transaction of the `run` this async context runs in, if any. Throws a
   * ValidationError when that transaction has already ended (a write left running after
   * `fn` returned): writing outside it instead would silently break the caller's atomicity.
   */
  current(): Tx | undefined {
    const frame = this.#frames.getStore()
    if (frame === undefined) return undefined
    if (frame.ended)
      throw new ValidationError(
        this.adapter,
        'this call runs in a store.transaction() that has already ended (committed or rolled back): await every write inside the transaction function, or pass { tx } explicitly',
      )
    return frame.tx
  }

  /**
   * Refuses an explicit `{ tx }` that a `store.transaction` opened on a single-use handle
   * (see `TransactionDriver.singleUse`) when that transaction is another store's, or has
   * ended: a write queued into it would be committed by the other store, or never.
   */
  assertJoinable(tx: unknown): void {
    if (typeof tx !== 'object' || tx === null) return
    const opened = openedBy.get(tx)
    if (opened === undefined) return
    if (opened.transactions !== this)
      this.#invalid(
        `tx is the transaction of another store's store.transaction() (${opened.transactions.adapter}), whose commit would write this store's events: pass it only to that store, or write inside this store's own store.transaction()`,
      )
    if (opened.ended)
      this.#invalid(
        'tx belongs to a store.transaction() that has already ended (committed or rolled back): a write queued into it would never be committed; write inside the transaction function, or open a new transaction',
      )
  }

  /**
   * `store.transaction`'s body: begin, `fn(tx, { attempt })` with `tx` ambient, commit; on a
   * throw roll back and rethrow `fn`'s error; release exactly once either way. A nested call
   * joins the open transaction. With `retries`, a failure classified `conflict` (of begin,
   * `fn` or commit) runs everything again, up to `retries` more times.
   */
  async run<T>(fn: TransactionFunction<Tx, T>, options?: TransactionOptions): Promise<T> {
    if (typeof fn !== 'function')
      this.#invalid(
        `the transaction function must be a function (tx, { attempt }) => Promise; got ${describe(fn)}`,
      )
    const retries = this.#retries(options)
    const outer = this.#frames.getStore()
    if (outer !== undefined && !outer.ended) {
      if (retries !== undefined)
        this.#invalid(
          'a nested store.transaction() joins the outer transaction and cannot set retries: pass { retries } to the outermost call',
        )
      return fn(outer.tx, { attempt: outer.attempt })
    }
    for (let attempt = 1; ; attempt++) {
      const outcome = await this.#attempt(fn, attempt)
      if (outcome.ok) return outcome.value
      if (outcome.final || attempt > (retries ?? 0) || this.#reason(outcome.error) !== 'conflict')
        throw outcome.error
    }
  }

  async #attempt<T>(fn: TransactionFunction<Tx, T>, attempt: number): Promise<Outcome<T>> {
    let tx: Tx
    try {
      tx = await this.#storage('begin', () => this.#driver.begin())
    } catch (error) {
      return { ok: false, error }
    }
    const frame: Frame<Tx> = { tx, attempt, ended: false }
    const opened =
      this.#driver.singleUse === true && typeof tx === 'object' && tx !== null
        ? { transactions: this as AmbientTransactions<unknown>, ended: false }
        : undefined
    if (opened !== undefined) openedBy.set(tx as object, opened)
    let outcome: Outcome<T>
    try {
      outcome = { ok: true, value: await this.#frames.run(frame, () => fn(tx, { attempt })) }
    } catch (error) {
      outcome = { ok: false, error }
    }
    frame.ended = true
    if (opened !== undefined) opened.ended = true
    if (outcome.ok) {
      try {
        await this.#storage('commit', () => this.#driver.commit(tx))
      } catch (error) {
        outcome = { ok: false, error }
      }
    }
    const broken = outcome.ok ? undefined : await this.#rollback(tx)
    try {
      await this.#storage('release', async () => this.#driver.release(tx, broken))
    } catch (error) {
      // After a commit the caller must learn the connection could not be given back, but a
      // failure of fn or commit is what it has to act on: that error is kept.
      if (outcome.ok) return { ok: false, error: releaseAfterCommit(error), final: true }
    }
    return outcome
  }

  /** Rolls back; answers the error when the connection's state is now unknown. */
  async #rollback(tx: Tx): Promise<Error | undefined> {
    try {
      await this.#storage('rollback', () => this.#driver.rollback(tx))
      return undefined
    } catch (error) {
      return error instanceof Error ? error : new Error(String(error))
    }
  }

  #storage<T>(step: string, run: () => Promise<T>): Promise<T> {
    return runStorageOperation(this.adapter, `transaction.${step}`, this.#classify, run)
  }

  /** A StorageError's own reason; txbox's other errors never retry; anything else is classified. */
  #reason(error: unknown): StorageErrorReason {
    if (error instanceof StorageError) return error.reason
    if (error instanceof TxboxError) return 'unknown'
    return this.#classify(error).reason
  }

  #retries(options: unknown): number | undefined {
    if (options === undefined) return undefined
    if (typeof options !== 'object' || options === null || Array.isArray(options))
      this.#invalid(
        `transaction options must be an object such as { retries: 3 } or left out; got ${describe(options)}`,
      )
    const unknownKey = Object.keys(options).find((key) => !OPTION_KEYS.includes(key))
    if (unknownKey !== undefined)
      this.#invalid(
        `transaction options has an unknown key ${JSON.stringify(unknownKey)}; the only option is retries`,
      )
    const { retries } = options as { retries?: unknown }
    if (retries === undefined) return undefined
    if (typeof retries !== 'number' || !Number.isSafeInteger(retries) || retries < 0)
      this.#invalid(
        `transaction retries must be a non-negative integer (0 = no retry); got ${describe(retries)}`,
      )
    return retries
  }

  #invalid(message: string): never {
    throw new ValidationError(this.adapter, message)
  }
}

/** The release's StorageError, saying that the transaction itself committed. */
const releaseAfterCommit = (error: unknown): unknown =>
  error instanceof StorageError
    ? new StorageError(
        error.adapter,
        error.operation,
        error.cause,
        `${error.cause instanceof Error ? error.cause.message : String(error.cause)} (the transaction had committed; only giving its connection back failed)`,
        error,
      )
    : error
