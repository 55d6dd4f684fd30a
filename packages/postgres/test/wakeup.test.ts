import { type OutboxEvent, OutboxRelay, type RelayWakeup, ValidationError } from '@txbox/core'
import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createPostgresStore,
  createPostgresWakeup,
  type PostgresStore,
  type PostgresWakeup,
} from '../src/index.js'
import {
  createNamespace,
  event,
  inTransaction,
  type Namespace,
  newPool,
  noServer,
  skipReason,
} from './helpers.js'

describe('the notify option', () => {
  it("is 'waiting', 'always' or 'off'; anything else is a ValidationError that says so", async () => {
    const pool = newPool(1)
    for (const wrong of [true, false, 'sometimes', 1]) {
      expect(() => createPostgresStore({ pool, notify: wrong as never })).toThrow(ValidationError)
    }
    expect(() => createPostgresStore({ pool, notify: false as never })).toThrow(/false is 'off'/)
    for (const mode of ['waiting', 'always', 'off'] as const) createPostgresStore({ pool, notify: mode })
    await pool.end()
  })
})

/** Polls `probe` until it answers true, or fails after `ms` (real time: these are real processes). */
const eventually = async (probe: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> => {
  const deadline = Date.now() + ms
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

describe.skipIf(noServer)(`LISTEN/NOTIFY wake-up${noServer ? ` (skipped: ${skipReason})` : ''}`, () => {
  let ns: Namespace
  let wakeup: PostgresWakeup
  /** A raw listener that records every payload on the channel, in delivery order. */
  let raw: pg.PoolClient
  const payloads: string[] = []
  let onPayload: (() => void) | undefined
  /** A store on the same tables that notifies on every enqueue, as before the flags. */
  let always: PostgresStore

  beforeAll(async () => {
    ns = await createNamespace({ max: 8 })
    always = ns.storeOn(ns.pool, { notify: 'always' })
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

  /** Publishes nothing, but leaves nothing due: a wait then sleeps instead of resolving at once. */
  const settle = async (): Promise<void> => {
    const claimed = await ns.store.outbox.claim({ limit: 10_000, leaseMs: 60_000, workerId: 'settle' })
    const ids = claimed.map((claimedEvent) => claimedEvent.eventId)
    if (ids.length > 0) await ns.store.outbox.markManyAsSent(ids, { workerId: 'settle' })
    while (await wakeup.wait({ timeoutMs: 0 })) {}
  }

  /**
   * A wait that has fallen asleep (its flag raised). The flush's sentinel reaches the raw
   * listener first and the wakeup's connection at its own pace, so a wait started right
   * after a flush may still return on it at once: then it is started again.
   */
  const asleep = async (timeoutMs = 60_000): Promise<{ woken: Promise<boolean> }> => {
    await eventually(async () => (await liveFlags()) === 0, 'every earlier wait lowered its flag')
    for (let attempt = 0; attempt < 5; attempt++) {
      let ended = false
      const waiting = wakeup.wait({ timeoutMs })
      void waiting.then(() => {
        ended = true
      })
      await eventually(async () => ended || (await liveFlags()) === 1, 'the wakeup raised its flag')
      // Wrapped: an async function's promise would otherwise adopt the wait's outcome.
      if (!ended) return { woken: waiting }
      await waiting
      await eventually(async () => (await liveFlags()) === 0, 'the ended wait lowered its flag')
    }
    throw new Error('every wait ended at once')
  }

  /** Not due for a minute of the frozen clock: only a notification can wake a wait for it. */
  const delayed = (eventId: string) => ({
    ...event(eventId),
    availableAt: new Date(ns.clock.now().getTime() + 60_000),
  })

  /** The live flags of the channel (a wakeup asleep). */
  const liveFlags = async (): Promise<number> =>
    (
      await ns.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM "${ns.schema}".txbox_wakeup WHERE channel = $1 AND sleeping_until > statement_timestamp()`,
        [ns.store.channel],
      )
    ).rows[0]?.n ?? 0

  it('a waiter resolves after an enqueue commits', async () => {
    await flush()
    await settle()
    const woken = wakeup.wait()
    await always.outbox.findOrCreate(event('w-1'))
    await expect(woken).resolves.toBe(true)
    expect(await flush()).toEqual([''])
  })

  it('a rolled-back enqueue notifies nobody; a batch commits one notification', async () => {
    await flush()
    await inTransaction(
      ns.pool,
      async (client) => {
        await always.outbox.findOrCreateMany([event('w-2'), event('w-3')], { tx: client })
      },
      'ROLLBACK',
    )
    expect(await flush()).toEqual([])

    await inTransaction(ns.pool, async (client) => {
      await always.outbox.findOrCreateMany([event('w-4'), event('w-5'), event('w-6')], { tx: client })
    })
    // PostgreSQL folds identical notifications of one transaction into one.
    expect(await flush()).toEqual([''])
  })

  it('re-enqueueing a stored id notifies nobody', async () => {
    await flush()
    await always.outbox.findOrCreate(event('w-1'))
    expect(await flush()).toEqual([])
  })

  it('a notification that arrives between waits is kept for the next wait', async () => {
    await flush()
    // The rollback test above left the wakeup's pending flag set by the sentinels: drain it.
    await settle()
    // Delayed: not due, so only the notification can resolve the next wait.
    await always.outbox.findOrCreate(delayed('w-7'))
    await flush()
    await expect(wakeup.wait({ timeoutMs: 0 })).resolves.toBe(true)
  })

  it("resolves false on timeout and on abort; notify: 'off' enqueues silently", async () => {
    await flush()
    await settle()
    await expect(wakeup.wait({ timeoutMs: 1 })).resolves.toBe(false)
    const controller = new AbortController()
    const waiting = wakeup.wait({ signal: controller.signal })
    controller.abort()
    await expect(waiting).resolves.toBe(false)

    // Even while a wakeup sleeps (its flag live), 'off' never notifies.
    const quiet = ns.storeOn(ns.pool, { notify: 'off' })
    const { woken: sleeping } = await asleep()
    await quiet.outbox.findOrCreate(delayed('w-8'))
    expect(await flush()).toEqual([])
    // The flush's own sentinel woke it.
    await expect(sleeping).resolves.toBe(true)
  })

  it("fits the relay's RelayWakeup: wait(signal) resolves on a commit and on abort", async () => {
    const relayWakeup: RelayWakeup = wakeup
    await flush()
    await settle()
    const controller = new AbortController()
    const woken = relayWakeup.wait(controller.signal)
    await ns.store.outbox.findOrCreate(event('w-9'))
    await expect(woken).resolves.toBe(true)
    await flush()
    await settle()
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
    // Once it sleeps (its flag raised, its check done): terminating it mid-query would fail the wait instead.
    await eventually(async () => (await liveFlags()) === 1, 'the wakeup raised its flag')
    // Terminate the wakeups' listening sessions (the shared one recovers the same way), not the raw listener.
    const rawPid = await raw.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')
    for (const row of pid.rows) {
      if (row.pid !== rawPid.rows[0]?.pid && row.pid !== undefined) {
        await ns.pool.query('SELECT pg_terminate_backend($1)', [row.pid])
      }
    }
    await expect(waiting).resolves.toBe(true)
    // Listening again on a fresh connection: a commit wakes the next wait.
    await settle()
    while (await own.wait({ timeoutMs: 0 })) {}
    const next = own.wait()
    await always.outbox.findOrCreate(event('w-10'))
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
  it("'waiting': no enqueue notifies while no wakeup sleeps; while one sleeps, an enqueue wakes it with one notification, and it lowers its flag", async () => {
    await flush()
    await settle()
    await eventually(async () => (await liveFlags()) === 0, 'no flag raised')
    await ns.store.outbox.findOrCreate(delayed('wa-1'))
    await ns.store.outbox.findOrCreateMany([delayed('wa-1b'), delayed('wa-1c')])
    expect(await flush()).toEqual([])

    const { woken: sleeping } = await asleep()
    await ns.store.outbox.findOrCreate(delayed('wa-2'))
    await expect(sleeping).resolves.toBe(true)
    expect(await flush()).toEqual([''])
    await eventually(async () => (await liveFlags()) === 0, 'the woken wakeup lowered its flag')
  })

  it('an event due before the wait resolves it at once, with no notification', async () => {
    await flush()
    await settle()
    await ns.storeOn(ns.pool, { notify: 'off' }).outbox.findOrCreate(event('wa-3'))
    await expect(wakeup.wait({ timeoutMs: 30_000 })).resolves.toBe(true)
    expect(await flush()).toEqual([])
  })

  it('an enqueue that read no flag, in a transaction that commits after the wakeup fell asleep, still wakes it', async () => {
    await flush()
    await settle()
    // The wait of the test before resolved at once; it lowers its flag after resolving. Read
    // up, that flag would make this enqueue notify (seen once under load).
    await eventually(async () => (await liveFlags()) === 0, 'no flag raised')
    const client = await ns.pool.connect()
    let sleeping: Promise<boolean> | undefined
    try {
      await client.query('BEGIN')
      await ns.store.outbox.findOrCreate(event('wa-4'), { tx: client })
      sleeping = (await asleep(30_000)).woken
      await client.query('COMMIT')
    } finally {
      client.release()
    }
    // No notification (the flag was down when the enqueue ran): the wakeup re-checked the
    // transaction it saw writing the outbox when it raised its flag.
    await expect(sleeping).resolves.toBe(true)
    expect(await flush()).toEqual([])
  })

  it('an expired flag (a wakeup that died asleep) notifies nobody, and the next wakeup to sleep deletes it', async () => {
    await flush()
    await settle()
    // settle's waits lower their flags in the background: only the dead flag may be left.
    await eventually(async () => (await liveFlags()) === 0, 'every earlier wait lowered its flag')
    await ns.pool.query(
      `INSERT INTO "${ns.schema}".txbox_wakeup (channel, listener, sleeping_until) VALUES ($1, 'dead', statement_timestamp() - interval '1 second')`,
      [ns.store.channel],
    )
    await ns.store.outbox.findOrCreate(delayed('wa-5'))
    expect(await flush()).toEqual([])
    await expect(wakeup.wait({ timeoutMs: 0 })).resolves.toBe(true) // the flush's sentinel
    await expect(wakeup.wait({ timeoutMs: 0 })).resolves.toBe(false)
    const dead = await ns.pool.query(`SELECT 1 FROM "${ns.schema}".txbox_wakeup WHERE listener = 'dead'`)
    expect(dead.rowCount).toBe(0)
  })

  it('end to end: a relay asleep on its wakeup (poll interval 60 s) publishes an event enqueued meanwhile within 5 s', async () => {
    await flush()
    await settle()
    const published: string[] = []
    const relay = new OutboxRelay({
      outbox: ns.store.outbox,
      publisher: {
        publish: async (sent: OutboxEvent) => {
          published.push(sent.eventId)
          return { duplicate: false }
        },
      },
      wakeup: ns.store.createWakeup(),
      workerId: 'relay-e2e',
      pollIntervalMs: 60_000,
    })
    relay.start()
    try {
      await eventually(async () => (await liveFlags()) === 1, "the relay's wakeup fell asleep")
      await ns.store.outbox.findOrCreate(event('e2e-1'))
      // Real time, and far below the poll interval: only the hint can make it.
      await eventually(async () => published.includes('e2e-1'), 'the relay published the event', 5_000)
      expect(await flush()).toEqual([''])
    } finally {
      await relay.stop()
    }
    expect(await ns.store.outbox.get('e2e-1')).toMatchObject({ status: 'sent' })
  })
})
