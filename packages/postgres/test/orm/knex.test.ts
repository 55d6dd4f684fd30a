import knex, { type Knex } from 'knex'
import { knexTransaction } from '../../src/orm/knex.js'
import { describeOrmIntegration } from './integration-cases.js'

describeOrmIntegration<Knex.Transaction>('Knex transactions (@txbox/postgres/knex)', (databaseUrl) => {
  const db = knex({ client: 'pg', connection: databaseUrl, pool: { min: 0, max: 2 } })
  return {
    transaction: (fn) => db.transaction(fn),
    insertOrder: async (trx, schema, id) => {
      await trx.withSchema(schema).insert({ id }).into('orders')
    },
    handle: knexTransaction,
    handleOfRoot: () => knexTransaction(db as unknown as Knex.Transaction),
    close: () => db.destroy(),
  }
})
