import type { EnqueueParams, OutboxRepository } from '@txbox/core'
import { describe, expect, it, vi } from 'vitest'
import { enqueueIn, makeEvents, runTransactions, transactionsOf } from '../src/scenarios.js'

describe('runTransactions', () => {
  const inFlight = async (clients: number, transactions: number) => {
    let now = 0
    let max = 0
    const seen: number[] = []
    const groups = Array.from({ length: transactions }, (_, n) => [n])
    await runTransactions(
      async (items, n) => {
        now++
        max = Math.max(max, now)
        expect(items).toEqual([n])
        seen.push(n)
        // A few turns of the event loop, as a real commit yields.
        for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve))
        now--
      },
      groups,
      clients,
    )
    return { max, seen }
  }

  it('keeps exactly `clients` transactions in flight and runs each once', async () => {
    const { max, seen } = await inFlight(8, 40)
    expect(max).toBe(8)
    expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, n) => n))
  })

  it('runs one at a time with one client, in order', async () => {
    const { max, seen } = await inFlight(1, 5)
    expect(max).toBe(1)
    expect(seen).toEqual([0, 1, 2, 3, 4])
  })

  it('never starts more clients than there are transactions', async () => {
    expect((await inFlight(8, 3)).max).toBe(3)
  })
})

describe('transactionsOf', () => {
  const events = makeEvents('t', 250)
  it('cuts enqueue-tx-100 into transactions of 100 events', () => {
    expect(transactionsOf('enqueue-tx-100', events).map((tx) => tx.length)).toEqual([100, 100, 50])
  })
  it('gives the single-event shapes one event per transaction', () => {
    for (const scenario of ['enqueue-tx', 'enqueue-tx-8'] as const) {
      const txs = transactionsOf(scenario, events)
      expect(txs).toHaveLength(250)
      expect(txs[7]).toEqual([events[7]])
    }
  })
})

describe('enqueueIn', () => {
  const outbox = () => {
    const findOrCreate = vi.fn(async () => ({}))
    const findOrCreateMany = vi.fn(async () => [])
    return {
      findOrCreate,
      findOrCreateMany,
      repo: { findOrCreate, findOrCreateMany } as unknown as OutboxRepository<string>,
    }
  }
  const events: EnqueueParams[] = makeEvents('e', 3)

  it('takes the single-event path for one event, in the given transaction', async () => {
    const o = outbox()
    await enqueueIn(o.repo, events.slice(0, 1), 'tx-1')
    expect(o.findOrCreate).toHaveBeenCalledWith(events[0], { tx: 'tx-1' })
    expect(o.findOrCreateMany).not.toHaveBeenCalled()
  })

  it('takes findOrCreateMany for more, in the given transaction', async () => {
    const o = outbox()
    await enqueueIn(o.repo, events, 'tx-2')
    expect(o.findOrCreateMany).toHaveBeenCalledWith(events, { tx: 'tx-2' })
    expect(o.findOrCreate).not.toHaveBeenCalled()
  })
})
