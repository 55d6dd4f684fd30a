import { defineCapabilities } from '../capabilities.js'
import type { Clock } from '../clock.js'
import type { TxboxStore } from '../store.js'
import { MemoryInboxRepository } from './memory-inbox-repository.js'
import { MemoryOutboxRepository } from './memory-outbox-repository.js'
import { MemoryTransaction } from './memory-transaction.js'

/** What the memory store can promise. */
export const memoryCapabilities = defineCapabilities({ transactions: 'native', claim: 'single-writer' })

/** The in-memory store: the reference implementation, for tests and examples. */
export interface MemoryStore extends TxboxStore<MemoryTransaction> {
  readonly outbox: MemoryOutboxRepository
  readonly inbox: MemoryInboxRepository
  /** Opens a transaction to pass as `{ tx }`; commit or roll it back yourself. */
  begin(): MemoryTransaction
}

/** Creates an in-memory outbox and inbox sharing one clock. */
export const createMemoryStore = (options: { clock?: Clock } = {}): MemoryStore => ({
  outbox: new MemoryOutboxRepository(options),
  inbox: new MemoryInboxRepository(options),
  migrate: async () => {},
  capabilities: memoryCapabilities,
  begin: () => new MemoryTransaction(),
})
