// Every published entry point, with names it must export (`name` is a function,
// `name:type` another typeof): a missing or mis-built entry fails by name. Shared by esm.mjs and cjs.cjs.
'use strict'
const adapters = {
  sqlite: 'createSqliteStore',
  postgres: 'createPostgresStore',
  mysql: 'createMySqlStore',
  mongodb: 'createMongoStore',
  redis: 'createRedisStore',
  dynamodb: 'createDynamoStore',
}

const entries = [
  ['@txbox/core', ['OutboxRelay', 'InboxProcessor', 'ValidationError', 'TxboxError', 'createMemoryStore']],
  [
    '@txbox/core/nats',
    ['createJetStreamPublisher', 'createJetStreamInboxSource', 'ensureStream', 'ensureDurableConsumer'],
  ],
  ['@txbox/conformance', ['runConformance', 'loadTarget', 'conformanceCases:object', 'SUITE_VERSION:string']],
  // vitest refuses require() (its test files always run as ES modules): the CommonJS entry
  // exists for the types and passes vitest's own error on.
  ['@txbox/conformance/vitest', ['describeConformance'], /Vitest cannot be imported in a CommonJS module/],
  ...Object.entries(adapters).flatMap(([name, factory]) => [
    [`@txbox/${name}`, [factory]],
    [`@txbox/${name}/conformance`, ['createConformanceTarget']],
  ]),
  ['@txbox/relay', ['runRelayCli', 'openStore', 'parseConfig']],
]

/** Asserts that `module`, loaded from `specifier`, has every export `entries` names. */
const checkExports = (assert, specifier, module, names) => {
  for (const spec of names) {
    const [name, type = 'function'] = spec.split(':')
    assert.equal(typeof module[name], type, `${specifier} exports ${name} (${type})`)
  }
}

module.exports = { entries, checkExports }
