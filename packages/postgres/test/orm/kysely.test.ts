import { Kysely, PostgresDialect, type Transaction } from 'kysely'
import pg from 'pg'
import { kyselyTransaction } from '../../src/orm/kysely.js'
import { describeOrmIntegration } from './integration-cases.js'

interface Database {
  orders: { id: string }
}

describeOrmIntegration<Transaction<Database>>(
  'Kysely transactions (@txbox/postgres/kysely)',
  (databaseUrl) => {
    const db = new Kysely<Database>({
      dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: databaseUrl, max: 2 }) }),
    })
    return {
      transaction: (fn) => db.transaction().execute(fn),
      insertOrder: async (trx, schema, id) => {
        await trx.withSchema(schema).insertInto('orders').values({ id }).execute()
      },
      handle: kyselyTransaction,
      handleOfRoot: () => kyselyTransaction(db as unknown as Transaction<Database>),
      close: () => db.destroy(),
    }
  },
)
