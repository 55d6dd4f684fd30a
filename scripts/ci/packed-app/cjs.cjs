// Loads every txbox entry point with `require` and runs the quick start on the CommonJS build.
'use strict'
const assert = require('node:assert/strict')
const Database = require('better-sqlite3')
const { connect } = require('nats')
const pg = require('pg')
const { checkExports, entries } = require('./entries.cjs')
const { postgresEnqueueClaim, sqliteToNats } = require('./quickstart.cjs')

const main = async () => {
  const modules = {}
  for (const [specifier, names, requireThrows] of entries) {
    const file = require.resolve(specifier)
    assert.match(
      file,
      /\/dist\/.*\.cjs$/,
      `${specifier} must resolve to the CommonJS build under require, got ${file}`,
    )
    if (requireThrows) {
      assert.throws(() => require(specifier), requireThrows)
      continue
    }
    const module = require(specifier)
    checkExports(assert, specifier, module, names)
    modules[specifier] = module
  }
  // The CommonJS build reads its package.json and migrations from the same paths as the ES one.
  assert.equal(
    modules['@txbox/conformance'].SUITE_VERSION,
    require('@txbox/conformance/package.json').version,
  )
  // Nothing in the CommonJS graph may have pulled in an ES module copy of txbox.
  const esmCopies = Object.keys(require.cache).filter((file) => /@txbox\/.*\/dist\/.*\.js$/.test(file))
  assert.deepEqual(esmCopies, [], 'the CommonJS build loaded ES module files of txbox')

  await sqliteToNats(
    {
      core: modules['@txbox/core'],
      jetstream: modules['@txbox/core/nats'],
      sqlite: modules['@txbox/sqlite'],
      Database,
      connect,
    },
    { natsUrl: process.env.TXBOX_NATS_URL, label: 'cjs' },
  )
  console.log('[packed-app] cjs: every entry point requires; SQLite -> NATS -> inbox quick start ok')
  if (process.env.TXBOX_POSTGRES_URL) {
    await postgresEnqueueClaim(
      { postgres: modules['@txbox/postgres'], pg },
      { postgresUrl: process.env.TXBOX_POSTGRES_URL, label: 'cjs' },
    )
    console.log('[packed-app] cjs: PostgreSQL enqueue + claim ok')
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
