import { describe, expect, it } from 'vitest'
import { createMemoryStore, MemoryTransaction, ValidationError } from '../src/index.js'

/** The memory store's `{ tx }` handle on its own: the conformance fixture opens a fresh one per call. */
describe('MemoryTransaction', () => {
  it('applies the enlisted writes at commit, in order, and not before', () => {
    const tx = new MemoryTransaction()
    const applied: string[] = []
    tx.enlist(() => applied.push('first'))
    tx.enlist(() => applied.push('second'))
    expect(applied).toEqual([])
    tx.commit()
    expect(applied).toEqual(['first', 'second'])
  })

  it('drops the enlisted writes at rollback', () => {
    const tx = new MemoryTransaction()
    const applied: string[] = []
    tx.enlist(() => applied.push('dropped'))
    tx.rollback()
    expect(applied).toEqual([])
  })

  it('refuses every use after commit, saying it is committed', () => {
    const tx = new MemoryTransaction()
    tx.commit()
    const message = '[txbox] [memory] the transaction is already committed'
    for (const use of [() => tx.enlist(() => {}), () => tx.commit(), () => tx.rollback()]) {
      expect(use).toThrow(ValidationError)
      expect(use).toThrow(message)
    }
  })

  it('refuses every use after rollback, saying it is rolled back, and never applies a late write', () => {
    const tx = new MemoryTransaction()
    const applied: string[] = []
    tx.rollback()
    const message = '[txbox] [memory] the transaction is already rolled back'
    for (const use of [() => tx.enlist(() => applied.push('late')), () => tx.commit(), () => tx.rollback()]) {
      expect(use).toThrow(ValidationError)
      expect(use).toThrow(message)
    }
    expect(applied).toEqual([])
  })

  it('keeps what each repository staged apart', () => {
    const tx = new MemoryTransaction()
    const outbox = {}
    const inbox = {}
    tx.staged<number>(outbox).set('a', 1)
    expect(tx.staged<number>(outbox).get('a')).toBe(1)
    expect(tx.staged<number>(inbox).has('a')).toBe(false)
  })
})

describe("a memory store's { tx }", () => {
  const event = (eventId: string) => ({ eventId, subject: 'orders.created', payload: '{}' })

  it("refuses another memory store's transaction (its begin() or store.transaction) and what is not one, before any write", async () => {
    const store = createMemoryStore()
    const other = createMemoryStore()
    await store.inbox.findOrCreate(event('in-1'))
    const foreign = other.begin()
    await other.transaction(async (otherTx) => {
      for (const tx of [foreign, otherTx]) {
        await expect(store.outbox.findOrCreate(event('e-1'), { tx })).rejects.toThrow(
          /^\[txbox\] \[memory\] tx is a transaction another memory store opened/,
        )
        await expect(store.outbox.findOrCreateMany([event('e-2')], { tx })).rejects.toThrow(ValidationError)
        await expect(store.inbox.markAsProcessed('in-1', { tx })).rejects.toThrow(ValidationError)
      }
    })
    foreign.commit()
    for (const tx of [{}, 'tx']) {
      await expect(store.outbox.findOrCreate(event('e-3'), { tx: tx as never })).rejects.toThrow(
        /^\[txbox\] \[memory\] tx must be a MemoryTransaction .*; got (a plain object|a string)$/,
      )
    }
    expect(store.outbox.snapshot()).toEqual([])
    expect(other.outbox.snapshot()).toEqual([])
    expect((await store.inbox.get('in-1'))?.status).toBe('processing')
    const own = store.begin()
    await store.outbox.findOrCreate(event('e-4'), { tx: own })
    own.commit()
    expect(store.outbox.snapshot().map(({ eventId }) => eventId)).toEqual(['e-4'])
  })
})
