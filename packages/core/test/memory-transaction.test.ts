import { describe, expect, it } from 'vitest'
import { MemoryTransaction, ValidationError } from '../src/index.js'

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
