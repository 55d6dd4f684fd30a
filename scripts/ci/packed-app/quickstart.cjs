// The quick start, run by esm.mjs with the ES module build and by cjs.cjs with the CommonJS
// build: the caller passes the modules it loaded, so each build is exercised on its own.
// CommonJS so that both callers can load it (an ES module can import it, not the reverse).
'use strict'
const assert = require('node:assert/strict')
const { randomUUID } = require('node:crypto')
const { setTimeout: sleep } = require('node:timers/promises')

const DEADLINE_MS = 30_000

const waitFor = async (what, check) => {
  const deadline = Date.now() + DEADLINE_MS
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`[packed-app] timed out after ${DEADLINE_MS} ms waiting for ${what}`)
    await sleep(50)
  }
}

// BEGIN IMMEDIATE ... COMMIT on the connection, which txbox takes as `tx`.
const sqliteTransaction = async (db, fn) => {
  db.exec('BEGIN IMMEDIATE')
  try {
    const result = await fn(db)
    db.exec('COMMIT')
    return result
  } catch (error) {
    db.exec('ROLLBACK')
    throw error
  }
}

/**
 * An order and its event commit in one SQLite transaction, OutboxRelay publishes it to
 * JetStream, InboxProcessor in a second database consumes it exactly once.
 */
const sqliteToNats = async ({ core, jetstream, sqlite, Database, connect }, { natsUrl, label }) => {
  const run = `${label}_${randomUUID().slice(0, 8)}`
  const stream = `TXBOX_PACKED_${run}`.toUpperCase()
  const subject = `txbox-packed.${run}.orders.created`
  const nc = await connect({ servers: natsUrl })
  const jsm = await nc.jetstreamManager()
  const shopDb = new Database(`shop-${run}.db`)
  const billingDb = new Database(`billing-${run}.db`)
  let relay
  let processor
  try {
    await jetstream.ensureStream(jsm, { name: stream, subjects: [`txbox-packed.${run}.>`] })
    await jetstream.ensureDurableConsumer(jsm, { stream, durable: 'billing' })

    const shop = sqlite.createSqliteStore({ db: shopDb })
    await shop.migrate()
    shopDb.exec('CREATE TABLE orders (id TEXT PRIMARY KEY, total REAL)')
    const order = { id: randomUUID(), total: 99.5 }
    const eventId = `order-created-${order.id}`
    await sqliteTransaction(shopDb, async (tx) => {
      tx.prepare('INSERT INTO orders (id, total) VALUES (?, ?)').run(order.id, order.total)
      await shop.outbox.findOrCreate({ eventId, subject, payload: JSON.stringify(order) }, { tx })
    })
    // A rolled-back transaction leaves no event behind.
    await assert.rejects(
      sqliteTransaction(shopDb, async (tx) => {
        await shop.outbox.findOrCreate({ eventId: `${eventId}-rolled-back`, subject, payload: '{}' }, { tx })
        throw new Error('rolled back on purpose')
      }),
      /rolled back on purpose/,
    )
    // Core's errors are the same classes the adapter throws (one copy of core per build).
    await assert.rejects(
      shop.outbox.findOrCreate({ eventId: '', subject, payload: '{}' }),
      (error) => error instanceof core.ValidationError && error.message.startsWith('[txbox] [sqlite]'),
    )

    relay = new core.OutboxRelay({
      outbox: shop.outbox,
      publisher: jetstream.createJetStreamPublisher({ connection: nc }),
      pollIntervalMs: 50,
    })
    relay.start()

    const billing = sqlite.createSqliteStore({ db: billingDb })
    await billing.migrate()
    billingDb.exec('CREATE TABLE invoices (order_id TEXT, total REAL)')
    processor = new core.InboxProcessor({
      inbox: billing.inbox,
      source: jetstream.createJetStreamInboxSource({ connection: nc, stream, durable: 'billing' }),
      transaction: (fn) => sqliteTransaction(billingDb, fn),
      handler: async ({ event, tx }) => {
        const { id, total } = JSON.parse(event.payload)
        tx.prepare('INSERT INTO invoices (order_id, total) VALUES (?, ?)').run(id, total)
      },
    })
    await processor.start()

    await waitFor('the inbox to process the event', () => billing.inbox.isProcessed(eventId))
    await waitFor(
      'the outbox to mark the event sent',
      async () => (await shop.outbox.getCountByStatus()).sent === 1,
    )
    await Promise.all([processor.stop(), relay.stop()])
    processor = undefined
    relay = undefined

    const invoices = billingDb.prepare('SELECT order_id, total FROM invoices').all()
    assert.deepEqual(invoices, [{ order_id: order.id, total: order.total }])
    const counts = await shop.outbox.getCountByStatus()
    assert.equal(counts.sent, 1, `outbox counts ${JSON.stringify(counts)}`)
    assert.equal(counts.pending, 0, `outbox counts ${JSON.stringify(counts)}`)
    const info = await jsm.streams.info(stream)
    assert.equal(info.state.messages, 1, 'exactly one message in the stream')
  } finally {
    await Promise.allSettled([processor?.stop(), relay?.stop()])
    await jsm.streams.delete(stream).catch(() => {})
    await nc.close()
    shopDb.close()
    billingDb.close()
  }
}

/** Enqueue in a PostgreSQL transaction, then claim it, in a schema of its own (dropped after). */
const postgresEnqueueClaim = async ({ postgres, pg }, { postgresUrl, label }) => {
  const schema = `txbox_packed_${label}_${randomUUID().slice(0, 8)}`
  const pool = new pg.Pool({ connectionString: postgresUrl })
  try {
    const store = postgres.createPostgresStore({ pool, schema })
    await store.migrate()
    const eventId = `packed-${randomUUID()}`
    const client = await pool.connect()
    try {
      await client.query('BEGIN')
      await store.outbox.findOrCreate(
        { eventId, subject: 'packed.pg', payload: '{"ok":true}' },
        { tx: client },
      )
      await client.query('COMMIT')
    } catch (error) {
      await client.query('ROLLBACK')
      throw error
    } finally {
      client.release()
    }
    const claimed = await store.outbox.claim({ limit: 10, leaseMs: 30_000, workerId: `packed-${label}` })
    assert.deepEqual(
      claimed.map((event) => [event.eventId, event.payload]),
      [[eventId, '{"ok":true}']],
    )
  } finally {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {})
    await pool.end()
  }
}

module.exports = { sqliteToNats, postgresEnqueueClaim }
