/**
 * What an adapter can promise, read by the conformance suite to choose which assertion
 * runs (a skipped case is reported with the reason, never silently).
 */
export interface Capabilities {
  /**
   * How `{ tx }` works: `native` the database's transaction handle; `multi` a Redis
   * `MULTI` pipeline; `collector` a list of actions the caller submits (DynamoDB
   * `TransactWriteItems`); `none` not supported by this deployment.
   */
  readonly transactions: 'native' | 'multi' | 'collector' | 'none'
  /**
   * How `claim` stays disjoint: `skip-locked` row locks skipped by concurrent claimers;
   * `atomic-script` one server-side script; `conditional-update` per-item compare-and-set;
   * `single-writer` the database serializes all writers.
   */
  readonly claim: 'skip-locked' | 'atomic-script' | 'conditional-update' | 'single-writer'
  /**
   * The largest event the store accepts, in bytes of its NATS message (payload + headers,
   * see `natsMessageBytes`): the store's `maxEventBytes` option (default 1 MiB, NATS's
   * `max_payload`), never above the database's own hard limit. `findOrCreate` raises
   * `PayloadTooLargeError` above it. Every txbox store sets it; a third-party target that
   * leaves it out is checked against the default.
   */
  readonly maxEventBytes?: number
  /**
   * True when the store keeps ordering keys (`orderingKey`, `keySeq`) and claims only the
   * first unsent event of each key (docs/CONTRACT.md, "Ordering keys"). A store without it
   * refuses `orderingKey` with `ValidationError`; the suite's `outbox.ordering.*` cases are
   * skipped and the `ordering` area is not certified.
   */
  readonly orderingKeys?: boolean
  /**
   * True when `claim` takes `keyRun` above 1 (a run of consecutive events of one key to one
   * claimer) and the outbox has `release` (docs/CONTRACT.md, "Key runs"). Only with
   * `orderingKeys`. A store without it refuses `keyRun > 1` with `ValidationError`; the
   * suite's `outbox.key-runs.*` cases are skipped.
   */
  readonly keyRuns?: boolean
  /** Why `transactions` is `none`, said in the conformance report when the transaction cases are skipped. */
  readonly transactionsNote?: string
}

/** Freezes a capabilities object, as every adapter exports it. */
export const defineCapabilities = <const C extends Capabilities>(capabilities: C): Readonly<C> =>
  Object.freeze({ ...capabilities })
