import { Kysely, MysqlDialect, type Transaction } from 'kysely'
import { kyselyTransaction } from '../../src/orm/kysely.js'
import { describeOrmIntegration } from './harness.js'

// biome-ignore lint/suspicious/noExplicitAny: the test table has no declared schema
type Db = any

describeOrmIntegration('Kysely (MysqlDialect)', async ({ pool, table }) => {
  // Kysely on the store's own pool: txbox finds the transaction's connection there.
  const db = new Kysely<Db>({
    dialect: new MysqlDialect({ pool: (pool as unknown as { pool: never }).pool }),
  })
  return {
    transaction: (fn) =>
      db.transaction().execute((trx) =>
        fn({
          insert: async (id) => {
            await trx.insertInto(table).values({ id }).execute()
          },
          tx: kyselyTransaction(trx),
        }),
      ),
    ended: async () => {
      let kept: Transaction<Db> | undefined
      await db.transaction().execute(async (trx) => {
        kept = trx
      })
      return kyselyTransaction(kept as Transaction<Db>)
    },
    wrongInputs: [
      ['the Kysely instance', () => kyselyTransaction(db as unknown as Transaction<Db>)],
      ['a plain object', () => kyselyTransaction({} as Transaction<Db>)],
    ],
    // The pool is the store's: the harness ends it.
    close: async () => {},
  }
})
