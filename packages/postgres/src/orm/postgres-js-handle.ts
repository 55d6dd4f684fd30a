import { ValidationError } from '@txbox/core'
import { ADAPTER } from '../errors.js'
import { type PostgresQueryHandle, postgresQueryHandle, wrongHandle } from '../query-handle.js'

/** The parts of a postgres.js `sql` the store uses; a transaction's `sql` also has `savepoint`. */
interface PostgresJsSql {
  unsafe(query: string, parameters?: unknown[], options?: { prepare?: boolean }): PromiseLike<unknown>
  savepoint?: unknown
  begin?: unknown
}

const isPostgresJsSql = (value: unknown): value is PostgresJsSql =>
  typeof value === 'function' && typeof (value as unknown as PostgresJsSql).unsafe === 'function'

/**
 * Parameters go as text, typed by the statement's own casts (`$1::text[]`, `$6::timestamptz`):
 * postgres.js types a JS array by its first element (a Date array as one timestamptz, which
 * `$5::timestamptz[]` refuses), and Drizzle's postgres-js driver turns postgres.js's date
 * serializers off. An array becomes its literal (`{"a","b",NULL}`), which postgres.js passes on
 * unchanged whatever type it gives the parameter.
 */
const text = (value: unknown): unknown => (value instanceof Date ? value.toISOString() : value)
const element = (value: unknown): string =>
  value === null || value === undefined ? 'NULL' : `"${String(text(value)).replace(/[\\"]/g, '\\$&')}"`
const parameter = (value: unknown): unknown =>
  Array.isArray(value) ? `{${value.map(element).join(',')}}` : text(value)

/**
 * The handle of a postgres.js transaction, `description` naming who handed it out (postgres.js
 * itself, or Drizzle's postgres-js driver).
 */
export const postgresJsHandle = (
  tx: unknown,
  integration: string,
  description: string,
): PostgresQueryHandle => {
  if (!isPostgresJsSql(tx)) {
    throw wrongHandle(
      integration,
      'the `sql` that postgres.js `sql.begin(async (tx) => ...)` hands its callback',
      tx,
    )
  }
  if (typeof tx.savepoint !== 'function') {
    throw new ValidationError(
      ADAPTER,
      `${integration} got a postgres.js \`sql\` that is not a transaction (it would autocommit the event): ` +
        'pass the `tx` that `sql.begin(async (tx) => ...)` hands its callback',
    )
  }
  return postgresQueryHandle({
    description,
    session: tx,
    // postgres.js keeps no state on a transaction's `sql`: used after its callback returned,
    // it runs on a pooled connection in autocommit. Only the server can tell.
    checkOpenOnServer: true,
    query: async <R>(statement: { text: string; values: readonly unknown[]; name?: string | undefined }) => {
      const result = (await tx.unsafe(statement.text, statement.values.map(parameter), {
        prepare: statement.name !== undefined,
      })) as R[] & { count: number | null }
      return { rows: [...result], rowCount: result.count }
    },
  })
}
