import postgres, { type TransactionSql } from 'postgres'
import { postgresJsTransaction } from '../../src/orm/postgres-js.js'
import { describeOrmIntegration } from './integration-cases.js'

type Tx = TransactionSql<Record<string, unknown>>

describeOrmIntegration<Tx>('postgres.js sql.begin (@txbox/postgres/postgres-js)', (databaseUrl) => {
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => undefined })
  return {
    transaction: <T>(fn: (tx: Tx) => Promise<T>) => sql.begin((tx) => fn(tx)) as Promise<T>,
    insertOrder: async (tx, schema, id) => {
      await tx`INSERT INTO ${tx(schema)}.orders (id) VALUES (${id})`
    },
    handle: postgresJsTransaction,
    handleOfRoot: () => postgresJsTransaction(sql as unknown as Tx),
    close: () => sql.end(),
  }
})
