import knexFactory, { type Knex } from 'knex'
import { knexTransaction } from '../../src/orm/knex.js'
import { describeOrmIntegration } from './harness.js'

describeOrmIntegration('Knex (mysql2)', async ({ url, table }) => {
  const knex = knexFactory({
    client: 'mysql2',
    connection: { uri: url, charset: 'utf8mb4_bin' },
    pool: { min: 0, max: 3 },
  })
  const pg = knexFactory({ client: 'pg', connection: 'postgres://nobody@127.0.0.1:1/none' })
  return {
    transaction: (fn) =>
      knex.transaction((trx) =>
        fn({
          insert: async (id) => {
            await trx(table).insert({ id })
          },
          tx: knexTransaction(trx),
        }),
      ),
    ended: async () => {
      let kept: Knex.Transaction | undefined
      await knex.transaction(async (trx) => {
        kept = trx
      })
      return knexTransaction(kept as Knex.Transaction)
    },
    wrongInputs: [
      ['the Knex instance', () => knexTransaction(knex as unknown as Knex.Transaction)],
      ['a plain object', () => knexTransaction({} as Knex.Transaction)],
      [
        'a transaction of the pg client',
        () =>
          knexTransaction(
            Object.assign(() => undefined, {
              isTransaction: true,
              isCompleted: () => false,
              client: pg.client,
            }) as unknown as Knex.Transaction,
          ),
      ],
    ],
    close: async () => {
      await knex.destroy()
      await pg.destroy()
    },
  }
})
