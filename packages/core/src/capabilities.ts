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
  /** The largest event (payload + headers + metadata) the store can hold, in bytes, if it has a hard limit. */
  readonly maxEventBytes?: number
  /** Why `transactions` is `none`, said in the conformance report when the transaction cases are skipped. */
  readonly transactionsNote?: string
}

/** Freezes a capabilities object, as every adapter exports it. */
export const defineCapabilities = <const C extends Capabilities>(capabilities: C): Readonly<C> =>
  Object.freeze({ ...capabilities })
