import type { Capabilities, ManualClock } from '@txbox/core'
import type { ConformanceFixture, ConformancePeer } from './target.js'

/** What a case runs against: a fresh fixture whose clock the case moves by hand. */
export interface CaseContext {
  /** The fixture's clock, starting at {@link SUITE_EPOCH}. Move it instead of sleeping. */
  readonly clock: ManualClock
  /** A fresh, isolated, migrated store built with `clock`. */
  readonly store: ConformanceFixture
  /** The capabilities in force for this run (static, or detected by the target's setup). */
  readonly capabilities: Capabilities
  /** Another isolated store (its own namespace), disposed after the case. */
  createStore(clock?: ManualClock): Promise<ConformanceFixture>
  /**
   * Opens a second instance on `fixture`'s namespace (default: `store`) over its own
   * connection, closed after the case; undefined when the target offers no `peer()`.
   */
  openPeer(fixture?: ConformanceFixture): Promise<ConformancePeer | undefined>
}

/** One named, stable check of the contract. */
export interface ConformanceCase {
  /** Stable id used by the report and `--only` (docs/CONTRACT.md §6). */
  readonly id: string
  /** One sentence: what the case proves. */
  readonly title: string
  /** A reason to skip under these capabilities, or undefined to run. */
  readonly skipReason?: (capabilities: Capabilities) => string | undefined
  run(context: CaseContext): Promise<void>
}

/** The instant every case's clock starts at. */
export const SUITE_EPOCH = Date.UTC(2026, 0, 1, 0, 0, 0, 0)

/** Declares a case (an identity function that keeps the type). */
export const defineCase = (definition: ConformanceCase): ConformanceCase => definition

/** Skips the transaction cases on stores that cannot offer `{ tx }`. */
export const requiresTransactions = (capabilities: Capabilities): string | undefined =>
  capabilities.transactions === 'none'
    ? `the store reports transactions: 'none'${capabilities.transactionsNote ? ` (${capabilities.transactionsNote})` : ''}`
    : undefined

/** Thrown by {@link skipCase}: the case found, once running, that the target cannot be judged by it. */
export class CaseSkipped extends Error {
  constructor(reason: string) {
    super(reason)
    this.name = 'CaseSkipped'
  }
}

/**
 * Ends a running case as skipped, for what only the fixture can tell (it offers no
 * `peer()`); a check that failed before it still fails the case.
 */
export const skipCase = (reason: string): never => {
  throw new CaseSkipped(reason)
}
