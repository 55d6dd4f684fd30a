import { uniqueSuffix } from '@txbox/conformance'
import { ManualClock, StorageError } from '@txbox/core'
import { describe, expect, it } from 'vitest'
import { connectRedis } from '../src/index.js'
import { connect, dropStore, REDIS_URL, SKIP, SKIP_REASON } from './helpers.js'

describe('connectRedis without a server', () => {
  it('refuses a URL that is not redis:// or rediss:// before building a client', () => {
    expect(() => connectRedis('http://127.0.0.1:6379')).toThrow(
      /^\[txbox\] \[redis\] url must start with redis:\/\/ or rediss:\/\/ .*; got scheme http:$/,
    )
    expect(() => connectRedis('127.0.0.1:6379')).toThrow(/got no URL$/)
  })

  it('builds without talking to a server, and keeps the connection error its failed call hides', async () => {
    // Port 1 on loopback: nothing listens there, so every connection attempt is refused.
    const connection = connectRedis('redis://127.0.0.1:1', { prefix: 'offline', connectTimeoutMs: 500 })
    expect(connection.client.status).toBe('wait')
    expect(connection.lastConnectionError()).toBeUndefined()
    const error = await connection.store.outbox.get('x').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StorageError)
    expect((error as StorageError).reason).toBe('unavailable')
    expect(connection.lastConnectionError()).toContain('ECONNREFUSED')
    await connection.close()
    await connection.close()
    // Closed, the client stops reconnecting (ioredis leaves a client closed while it was
    // reconnecting in that status, with its retry timer cleared): no attempt follows.
    let attempts = 0
    connection.client.on('reconnecting', () => {
      attempts += 1
    })
    await new Promise((resolve) => setTimeout(resolve, 600))
    expect(attempts).toBe(0)
  })

  it('closes a client that never connected without connecting it', async () => {
    const connection = connectRedis('redis://127.0.0.1:1')
    await connection.close()
    expect(connection.client.status).toBe('end')
    expect(connection.lastConnectionError()).toBeUndefined()
  })
})

describe.skipIf(SKIP)(`connectRedis against the server (${SKIP ? SKIP_REASON : 'redis'})`, () => {
  it('migrates, enqueues under its prefix, answers the server version and closes twice', async () => {
    const prefix = `t_${uniqueSuffix()}`
    const clock = new ManualClock()
    const connection = connectRedis(REDIS_URL ?? '', { prefix, clock: clock.now, maxEventBytes: 2048 })
    const admin = connect()
    try {
      expect(connection.store.capabilities.maxEventBytes).toBe(2048)
      await connection.store.migrate()
      const event = await connection.store.outbox.findOrCreate({ eventId: 'e', subject: 's', payload: 'p' })
      expect(event.enqueuedAt).toEqual(new Date(clock.peekMs()))
      expect(await admin.hget(connection.store.outbox.keys.event('e'), 'payload')).toBe('p')
      expect(connection.store.outbox.keys.event('e')).toContain(`{${prefix}}`)
      expect(await connection.serverVersion()).toMatch(/^Redis \d+\.\d+\.\d+$/)
      expect(connection.lastConnectionError()).toBeUndefined()
      await connection.close()
      await connection.close()
      expect(connection.client.status).toBe('end')
    } finally {
      await dropStore(admin, prefix)
      await admin.quit()
    }
  })
})
