import { createMemoryStore, type MemoryTransaction } from '@txbox/core'
import type { ConformanceFixture, ConformanceTarget } from './target.js'
import { SUITE_VERSION } from './version.js'

/**
 * The in-memory reference store as a target: the suite's own sanity check, and the model a
 * third party can copy for its adapter's target module. The oracle reads the raw maps.
 */
export const createMemoryTarget = (): ConformanceTarget<MemoryTransaction> => ({
  name: 'memory',
  version: SUITE_VERSION,
  capabilities: createMemoryStore().capabilities,
  async create({ clock }): Promise<ConformanceFixture<MemoryTransaction>> {
    const store = createMemoryStore({ clock })
    return {
      outbox: store.outbox,
      inbox: store.inbox,
      migrate: () => store.migrate(),
      async transaction(fn, options = {}) {
        const tx = store.begin()
        try {
          const result = await fn(tx)
          if (options.rollback) tx.rollback()
          else tx.commit()
          return result
        } catch (error) {
          tx.rollback()
          throw error
        }
      },
      storeTransaction: store.transaction,
      // Each memory store is its own database: another store's transaction is foreign.
      async foreignTransaction(fn) {
        const tx = createMemoryStore({ clock }).begin()
        const result = await fn(tx)
        tx.commit()
        return result
      },
      oracle: {
        outbox: async (eventId) => store.outbox.snapshot().find((event) => event.eventId === eventId) ?? null,
        inbox: async (eventId) => store.inbox.snapshot().find((event) => event.eventId === eventId) ?? null,
        outboxCount: async () => store.outbox.snapshot().length,
        inboxCount: async () => store.inbox.snapshot().length,
      },
      // The reference store lives in one process and has no connection to open twice: its
      // peer is the fixture's own repositories (read through `this`, so a target that swaps
      // them in a copy of this fixture races its own). Cross-connection cases then prove no
      // more than the in-process ones, for this store only.
      async peer(this: ConformanceFixture<MemoryTransaction>) {
        return { outbox: this.outbox, inbox: this.inbox, dispose: async () => {} }
      },
      dispose: async () => {},
    }
  },
})

/** The module shape the CLI loads: `--target memory`. */
export const createConformanceTarget = createMemoryTarget
