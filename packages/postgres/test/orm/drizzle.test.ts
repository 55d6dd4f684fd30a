import { drizzle as drizzleNodePg } from 'drizzle-orm/node-postgres'
import { pgSchema, text } from 'drizzle-orm/pg-core'
import { drizzle as drizzlePostgresJs } from 'drizzle-orm/postgres-js'
import pg from 'pg'
import postgres from 'postgres'
import { drizzleTransaction } from '../../src/orm/drizzle.js'
import { describeOrmIntegration, type OrmUnderTest } from './integration-cases.js'

const ordersOf = (schema: string) => pgSchema(schema).table('orders', { id: text('id').primaryKey() })

type AnyTransaction = Parameters<Parameters<ReturnType<typeof drizzleNodePg>['transaction']>[0]>[0]

const common = (
  db: { transaction: (fn: (tx: AnyTransaction) => Promise<unknown>) => Promise<unknown> },
  close: () => Promise<void>,
): OrmUnderTest<AnyTransaction> => ({
  transaction: <T>(fn: (tx: AnyTransaction) => Promise<T>) => db.transaction(fn) as Promise<T>,
  insertOrder: async (tx, schema, id) => {
    await tx.insert(ordersOf(schema)).values({ id })
  },
  handle: drizzleTransaction,
  handleOfRoot: () => drizzleTransaction(db),
  close,
})

describeOrmIntegration<AnyTransaction>(
  'Drizzle on node-postgres (@txbox/postgres/drizzle)',
  (databaseUrl) => {
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 })
    return common(drizzleNodePg(pool) as never, () => pool.end())
  },
)

describeOrmIntegration<AnyTransaction>('Drizzle on postgres-js (@txbox/postgres/drizzle)', (databaseUrl) => {
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => undefined })
  return common(drizzlePostgresJs(sql) as never, () => sql.end())
})
