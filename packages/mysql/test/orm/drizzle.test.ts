import { sql } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/mysql2'
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres'
import { createPool } from 'mysql2/promise'
import { drizzleTransaction } from '../../src/orm/drizzle.js'
import { describeOrmIntegration } from './harness.js'

describeOrmIntegration('Drizzle (mysql2)', async ({ url, table }) => {
  const pool = createPool({ uri: url, charset: 'utf8mb4_bin', connectionLimit: 3 })
  const db = drizzle({ client: pool })
  const pg = drizzlePg('postgres://nobody@127.0.0.1:1/none')
  return {
    transaction: (fn) =>
      db.transaction((tx) =>
        fn({
          insert: async (id) => {
            await tx.execute(sql`INSERT INTO ${sql.identifier(table)} (id) VALUES (${id})`)
          },
          tx: drizzleTransaction(tx),
        }),
      ),
    ended: async () => {
      let kept: object | undefined
      await db.transaction(async (tx) => {
        kept = tx
      })
      return drizzleTransaction(kept as object)
    },
    wrongInputs: [
      ['the Drizzle database', () => drizzleTransaction(db)],
      ['a plain object', () => drizzleTransaction({})],
      [
        'a node-postgres Drizzle transaction',
        () => drizzleTransaction(Object.assign(Object.create(pg), { rollback: () => undefined })),
      ],
    ],
    close: async () => {
      await pool.end()
      await pg.$client.end()
    },
  }
})
