import { ManualClock, PayloadTooLargeError, StorageError, ValidationError } from '@txbox/core'
import { Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { createRedisStore } from '../src/index.js'
import { SKIP, SKIP_REASON, useStores } from './helpers.js'

const LEASE = { leaseMs: 1000, workerId: 'w' }

describe('validation and driver errors without a server', () => {
  // A client that refuses every command: if a method reached Redis it would fail differently.
  const offline = new Redis({ lazyConnect: true, enableOfflineQueue: false })
  const store = createRedisStore({ redis: offline, keyPrefix: 'offline' })

  it('rejects a bad keyPrefix when the store is built', () => {
    expect(() => createRedisStore({ redis: offline, keyPrefix: 'bad prefix}' })).toThrow(ValidationError)
    expect(() => createRedisStore({ redis: offline, keyPrefix: '{tag}' })).toThrow(ValidationError)
  })

  it('validates before any I/O', async () => {
    await expect(store.outbox.claim({ leaseMs: 0, workerId: 'w' })).rejects.toBeInstanceOf(ValidationError)
    await expect(store.outbox.findPending({ limit: 0 })).rejects.toBeInstanceOf(ValidationError)
    await expect(
      store.outbox.findOrCreate({ eventId: '', subject: 's', payload: 'p' }),
    ).rejects.toBeInstanceOf(ValidationError)
    await expect(
      store.inbox.claim({ eventId: 'x', subject: 'a b', payload: '' }, LEASE),
    ).rejects.toBeInstanceOf(ValidationError)
  })

  it('takes maxEventBytes, shows it on capabilities, and refuses bigger events before any I/O', async () => {
    expect(store.capabilities.maxEventBytes).toBe(1_048_576)
    const small = createRedisStore({ redis: offline, keyPrefix: 'offline', maxEventBytes: 200 })
    expect(small.capabilities.maxEventBytes).toBe(200)
    expect(Object.isFrozen(small.capabilities)).toBe(true)
    const huge = { eventId: 'huge', subject: 's', payload: 'x'.repeat(200) }
    await expect(small.outbox.findOrCreate(huge)).rejects.toBeInstanceOf(PayloadTooLargeError)
    await expect(small.outbox.findOrCreateMany([huge])).rejects.toBeInstanceOf(PayloadTooLargeError)
    expect(() => createRedisStore({ redis: offline, maxEventBytes: 2 ** 29 + 1 })).toThrow(
      /maxEventBytes must be at most 536870912/,
    )
  })

  it('wraps a driver error in StorageError with the cause', async () => {
    const error = await store.outbox.claim(LEASE).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StorageError)
    expect((error as StorageError).message).toMatch(/^\[txbox\] \[redis\] outbox\.claim failed/)
    expect((error as StorageError).cause).toBeInstanceOf(Error)
  })
})

describe.skipIf(SKIP)(`payload fidelity and foreign data (${SKIP ? SKIP_REASON : 'redis'})`, () => {
  const { redis, fresh } = useStores()

  it('round-trips U+0000, astral characters, quotes, backslashes and 1 MiB through every path', async () => {
    // Payload and headers add up to more than the default 1 MiB of a NATS message.
    const t = await fresh(new ManualClock(), { maxEventBytes: 2 * 1024 * 1024 })
    const big = 'x'.repeat(1024 * 1024 - 3) + '😀'
    const tricky = `nul\u0000mid\u0001 😀 𝄞 "q" \\ back \u{10FFFF} é`
    await t.store.outbox.findOrCreate({ eventId: 'big', subject: 's', payload: big, headers: tricky })
    await t.store.outbox.findOrCreate({ eventId: 'tricky😀', subject: 's', payload: tricky })
    const raw = await redis.hgetall(t.store.outbox.keys.event('big'))
    expect(raw.payload).toBe(big)
    expect(raw.headers).toBe(tricky)
    expect((await t.store.outbox.get('tricky😀'))?.payload).toBe(tricky)
    expect((await t.store.outbox.findPending()).map((e) => e.payload)).toEqual([big, tricky])
    const claimed = await t.store.outbox.claim(LEASE)
    expect(claimed.map((e) => [e.eventId, e.payload, e.headers])).toEqual([
      ['big', big, tricky],
      ['tricky😀', tricky, undefined],
    ])
    const inbox = await t.store.inbox.claim(
      { eventId: 'in', subject: 's', payload: tricky, headers: big },
      LEASE,
    )
    expect(inbox.event.payload).toBe(tricky)
    expect((await t.store.inbox.get('in'))?.headers).toBe(big)
  })

  it('a key of the wrong type (foreign data) surfaces as StorageError', async () => {
    const t = await fresh()
    await redis.set(t.store.outbox.keys.counts, 'not a hash')
    const error = await t.store.outbox.getCountByStatus().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StorageError)
    expect(String((error as StorageError).cause)).toContain('WRONGTYPE')
    const scriptError = await t.store.outbox
      .findOrCreate({ eventId: 'e', subject: 's', payload: 'p' })
      .catch((e) => e)
    expect(scriptError).toBeInstanceOf(StorageError)
  })
})
