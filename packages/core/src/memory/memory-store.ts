import { defineCapabilities } from '../capabilities.js'
import type { Clock } from '../clock.js'
import { DEFAULT_MAX_EVENT_BYTES } from '../nats-message.js'
import type { TxboxStore } from '../store.js'
import { MemoryInboxRepository } from './memory-inbox-repository.js'
import { MemoryOutboxRepository } from './memory-outbox-repository.js'
import { MemoryTransaction } from './memory-transaction.js'

/** What the memory store can promise (with the default `maxEventBytes`; see `store.capabilities`). */
export const memoryCapabilities = defineCapabilities({
  transactions: 'native',
  claim: 'single-writer',
  maxEventBytes: DEFAULT_MAX_EVENT_BYTES,
})

/** The in-memory store: the reference implementation, for tests and examples. */
export interface MemoryStore extends TxboxStore<MemoryTransaction> {
  readonly outbox: MemoryOutboxRepository
  readonly inbox: MemoryInboxRepository
  /** Opens a transaction to pass as `{ tx }`; commit or roll it back yourself. */
  begin(): MemoryTransaction
}

/** Creates an in-memory outbox and inbox sharing one clock. */
export const createMemoryStore = (
  options: { clock?: Clock; maxEventBytes?: number | undefined } = {},
): MemoryStore => {
  const outbox = new MemoryOutboxRepository(options)
  return {
    outbox,
    inbox: new MemoryInboxRepository(options),
    migrate: async () => {},
    capabilities: defineCapabilities({ ...memoryCapabilities, maxEventBytes: outbox.maxEventBytes }),
    begin: () => new MemoryTransaction(),
  }
}
