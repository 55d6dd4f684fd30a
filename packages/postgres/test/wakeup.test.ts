import type { RelayWakeup } from '@txbox/core'
import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPostgresWakeup, type PostgresWakeup } from '../src/index.js'
import { createNamespace, event, inTransaction, type Namespace, noServer, skipReason } from './helpers.js'

describe.skipIf(noServer)(`LISTEN/NOTIFY wake-up${noServer ? ` (skipped: ${skipReason})` : ''}`, () => {
  let ns: Namespace
  let wakeup: PostgresWakeup
  /** A raw listener that records every payload on the channel, in delivery order. */
  let raw: pg.PoolClient
  const payloads: string[] = []
  let onPayload: (() => void) | undefined

  beforeAll(async () => {
    ns = await createNamespace({ max: 6 })
    wakeup = ns.store.createWakeup()
    await wakeup.listen()
    raw = await ns.pool.connect()
    raw.on('notification', (message) => {
      if (message.channel !== ns.store.channel) return
      payloads.push(message.payload ?? '')
      onPayload?.()
    })
    await raw.query(`LISTEN "${ns.store.channel}"`)
  })

  afterAll(async () => {
    await wakeup?.close()
    raw?.release()
    await ns?.dispose()
  })

  /**
   * Notifications are delivered in commit order, so once a sentinel sent after some
   * transaction has arrived, every notification that transaction made has arrived too:
   * a deterministic "nothing came" check without sleeping.
   */
  const flush = async (): Promise<string[]> => {
    const sentinel = `sentinel-${payloads.length}-${Math.random()}`
    const arrived = new Promise<void>((resolve) => {
      onPayload = () => {
        if (payloads.includes(sentinel)) resolve()
      }
    })
    await ns.pool.query('SELECT pg_notify($1, $2)', [ns.store.channel, sentinel])
    await arrived
    const seen = payloads.splice(0).filter((payload) => payload !== sentinel)
    return seen
  }

  it('a waiter resolves after an enqueue commits', async () => {
    await flush()
    const woken = wakeup.wait()
    await ns.store.outbox.findOrCreate(event('w-1'))
    await expect(woken).resolves.toBe(true)
    expect(await flush()).toEqual([''])
  })

  it('a rolled-back enqueue notifies nobody; a batch commits one notification', async () => {
    await flush()
    await inTransaction(
      ns.pool,
      async (client) => {
        await ns.store.outbox.findOrCreateMany([event('w-2'), event('w-3')], { tx: client })
      },
      'ROLLBACK',
    )
    expect(await flush()).toEqual([])

    await inTransaction(ns.pool, async (client) => {
      await ns.store.outbox.findOrCreateMany([event('w-4'), event('w-5'), event('w-6')], { tx: client })
    })
    // PostgreSQL folds identical notifications of one transaction into one.
    expect(await flush()).toEqual([''])
  })

  it('re-enqueueing a stored id notifies nobody', async () => {
    await flush()
    await ns.store.outbox.findOrCreate(event('w-1'))
    expect(await flush()).toEqual([])
  })

  it('a notification that arrives between waits is kept for the next wait', async () => {
    await flush()
    // The rollback test above left the wakeup's pending flag set by the sentinels: drain it.
    while (await wakeup.wait({ timeoutMs: 0 })) {}
    await ns.store.outbox.findOrCreate(event('w-7'))
    await flush()
    await expect(wakeup.wait({ timeoutMs: 0 })).resolves.toBe(true)
  })

  it('resolves false on timeout and on abort; notify: false enqueues silently', async () => {
    await flush()
    while (await wakeup.wait({ timeoutMs: 0 })) {}
    await expect(wakeup.wait({ timeoutMs: 1 })).resolves.toBe(false)
    const controller = new AbortController()
    const waiting = wakeup.wait({ signal: controller.signal })
    controller.abort()
    await expect(waiting).resolves.toBe(false)

    const quiet = ns.storeOn(ns.pool, { notify: false })
    await quiet.outbox.findOrCreate(event('w-8'))
    expect(await flush()).toEqual([])
  })

  it("fits the relay's RelayWakeup: wait(signal) resolves on a commit and on abort", async () => {
    const relayWakeup: RelayWakeup = wakeup
    await flush()
    while (await wakeup.wait({ timeoutMs: 0 })) {}
    const controller = new AbortController()
    const woken = relayWakeup.wait(controller.signal)
    await ns.store.outbox.findOrCreate(event('w-9'))
    await expect(woken).resolves.toBe(true)
    await flush()
    while (await wakeup.wait({ timeoutMs: 0 })) {}
    const aborted = relayWakeup.wait(controller.signal)
    // Let the wait register before aborting, as the relay does on its poll timeout.
    await new Promise((resolve) => setImmediate(resolve))
    controller.abort()
    await expect(aborted).resolves.toBe(false)
  })

  it('a lost listening connection wakes the waiter, and the next wait listens again', async () => {
    const own = ns.store.createWakeup()
    await own.listen()
    const pid = await ns.pool.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE query = $1 AND datname = current_database()`,
      [`LISTEN "${ns.store.channel}"`],
    )
    const waiting = own.wait()
    // Terminate the wakeups' listening sessions (the shared one recovers the same way), not the raw listener.
    const rawPid = await raw.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')
    for (const row of pid.rows) {
      if (row.pid !== rawPid.rows[0]?.pid && row.pid !== undefined) {
        await ns.pool.query('SELECT pg_terminate_backend($1)', [row.pid])
      }
    }
    await expect(waiting).resolves.toBe(true)
    // Listening again on a fresh connection: a commit wakes the next wait.
    while (await own.wait({ timeoutMs: 0 })) {}
    const next = own.wait()
    await ns.store.outbox.findOrCreate(event('w-10'))
    await expect(next).resolves.toBe(true)
    await own.close()
  })

  it('a wakeup built from schema and prefix listens on the store channel; close() returns its connection', async () => {
    const standalone = createPostgresWakeup({ pool: ns.pool, schema: ns.schema })
    expect(standalone.channel).toBe(ns.store.channel)
    await standalone.listen()
    const before = ns.pool.idleCount
    await standalone.close()
    expect(ns.pool.idleCount).toBe(before + 1)
    await expect(standalone.wait()).resolves.toBe(false)
  })
})
