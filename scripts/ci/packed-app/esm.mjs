// Loads every txbox entry point with `import` and runs the quick start on the ES module build.
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import Database from 'better-sqlite3'
import { connect } from 'nats'
import pg from 'pg'
import { checkExports, entries } from './entries.cjs'
import { postgresEnqueueClaim, sqliteToNats } from './quickstart.cjs'

const modules = {}
for (const [specifier, names] of entries) {
  const file = import.meta.resolve(specifier)
  assert.match(
    file,
    /\/dist\/.*\.js$/,
    `${specifier} must resolve to the ES module build under import, got ${file}`,
  )
  const module = await import(specifier)
  checkExports(assert, specifier, module, names)
  modules[specifier] = module
}
// Each build reads its own package.json and migrations through import.meta.url.
const require = createRequire(import.meta.url)
assert.equal(modules['@txbox/conformance'].SUITE_VERSION, require('@txbox/conformance/package.json').version)

const core = modules['@txbox/core']
// An app that imports txbox in one place and requires it in another holds both builds: the
// CommonJS copy's errors are still instances of the ES module copy's classes.
const cjsStore = require('@txbox/sqlite').createSqliteStore({ db: new Database(':memory:') })
await cjsStore.migrate()
await assert.rejects(
  cjsStore.outbox.findOrCreate({ eventId: '', subject: 'orders.created', payload: '{}' }),
  (error) => error instanceof core.ValidationError && error instanceof core.TxboxError,
)
await sqliteToNats(
  { core, jetstream: modules['@txbox/core/nats'], sqlite: modules['@txbox/sqlite'], Database, connect },
  { natsUrl: process.env.TXBOX_NATS_URL, label: 'esm' },
)
console.log('[packed-app] esm: every entry point imports; SQLite -> NATS -> inbox quick start ok')
if (process.env.TXBOX_POSTGRES_URL) {
  await postgresEnqueueClaim(
    { postgres: modules['@txbox/postgres'], pg },
    { postgresUrl: process.env.TXBOX_POSTGRES_URL, label: 'esm' },
  )
  console.log('[packed-app] esm: PostgreSQL enqueue + claim ok')
}
