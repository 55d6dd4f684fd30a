import { describeHandle, ValidationError } from '@txbox/core'
import { ADAPTER } from '../errors.js'
import { type MySqlQueryHandle, mySqlQueryHandle, type StatementTarget } from '../query-handle.js'
import { toDateTime } from '../rows.js'

const SOURCE = 'a Prisma interactive transaction'

/** The raw-SQL methods of a Prisma client (an interactive transaction's `tx` has them too). */
interface PrismaTransactionLike {
  $queryRawUnsafe?: (query: string, ...values: unknown[]) => Promise<unknown>
  $executeRawUnsafe?: (query: string, ...values: unknown[]) => Promise<unknown>
  $connect?: unknown
}

/** What Prisma throws for a query on an interactive transaction that has ended (P2028). */
const ENDED = /P2028|Transaction already closed|Transaction API error/

/** Statements that answer rows; the others answer a count of affected rows. */
const ANSWERS_ROWS = /^\s*(SELECT|DO)\b/i

/**
 * A row as mysql2 reads it with the adapter's per-statement options: DATETIME as its UTC
 * text, BIGINT as text. Prisma's raw queries answer DATETIME as a Date (read as UTC) and
 * BIGINT as a bigint.
 */
const asMySql2Row = (row: Record<string, unknown>): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(row)) {
    out[name] = value instanceof Date ? toDateTime(value) : typeof value === 'bigint' ? String(value) : value
  }
  return out
}

/** Where Prisma keeps the server's error behind its own (`P2010`): the driver adapter's cause. */
interface PrismaDriverError {
  readonly meta?: {
    readonly driverAdapterError?: {
      readonly cause?: { readonly originalCode?: unknown; readonly originalMessage?: unknown }
    }
  }
}

/**
 * Prisma's error with the server's error number where `classifyMySqlError` reads it
 * (`errno`), so a missing table is `schema` ("did you run migrate()?") and a deadlock
 * `conflict`, as through mysql2; Prisma's own error stays the cause.
 */
const withErrno = (error: unknown): unknown => {
  const cause = (error as PrismaDriverError | null)?.meta?.driverAdapterError?.cause
  const errno = Number(cause?.originalCode)
  if (!Number.isSafeInteger(errno) || errno <= 0) return error
  const message = typeof cause?.originalMessage === 'string' ? cause.originalMessage : String(error)
  return Object.assign(new Error(message, { cause: error }), { errno })
}

/**
 * The transaction's statements through `$queryRawUnsafe` / `$executeRawUnsafe`, answered in
 * mysql2's shapes (`[rows]`, `[{ affectedRows }]`), so the repositories run them unchanged.
 */
const statementsOf = (tx: Required<Pick<PrismaTransactionLike, '$queryRawUnsafe' | '$executeRawUnsafe'>>) => {
  const run = async (options: string | { sql: string }, values: unknown[] = []): Promise<[unknown, []]> => {
    const sql = typeof options === 'string' ? options : options.sql
    try {
      if (ANSWERS_ROWS.test(sql)) {
        const rows = (await tx.$queryRawUnsafe(sql, ...values)) as Record<string, unknown>[]
        return [rows.map(asMySql2Row), []]
      }
      const affectedRows = Number(await tx.$executeRawUnsafe(sql, ...values))
      return [{ affectedRows, insertId: 0, warningStatus: 0 }, []]
    } catch (error) {
      const code = (error as { code?: unknown } | null)?.code
      if (error instanceof Error && ENDED.test(`${String(code ?? '')} ${error.message}`))
        throw new ValidationError(
          ADAPTER,
          `tx (${SOURCE}) has already been committed or rolled back: write inside prisma.$transaction()'s callback, before it returns`,
          { cause: error },
        )
      throw withErrno(error)
    }
  }
  return { execute: run, query: run } as unknown as StatementTarget
}

/**
 * `{ tx }` for a Prisma 7 interactive transaction on MySQL / MariaDB (driver adapter
 * `@prisma/adapter-mariadb`). Prisma keeps its connection inside its driver adapter, so
 * txbox's statements run through the transaction's `$queryRawUnsafe` / `$executeRawUnsafe`.
 *
 * ```ts
 * await prisma.$transaction(async (tx) => {
 *   await tx.order.create({ data: order })
 *   await store.outbox.findOrCreate(event, { tx: prismaTransaction(tx) })
 * })
 * ```
 */
export const prismaTransaction = (tx: object): MySqlQueryHandle => {
  const value = tx as PrismaTransactionLike | null
  if (
    typeof value !== 'object' ||
    value === null ||
    typeof value.$queryRawUnsafe !== 'function' ||
    typeof value.$executeRawUnsafe !== 'function'
  )
    throw new ValidationError(
      ADAPTER,
      `prismaTransaction() needs the tx of prisma.$transaction(async (tx) => ...); got ${describeHandle(tx)}`,
    )
  // Prisma hides $connect from an interactive transaction's client; the PrismaClient has it.
  if (typeof value.$connect === 'function')
    throw new ValidationError(
      ADAPTER,
      'prismaTransaction() got the PrismaClient itself, whose statements autocommit: pass the tx of prisma.$transaction(async (tx) => ...)',
    )
  const connection = statementsOf({
    $queryRawUnsafe: value.$queryRawUnsafe.bind(tx),
    $executeRawUnsafe: value.$executeRawUnsafe.bind(tx),
  })
  // Prisma refuses a statement on an ended transaction itself (P2028): no server check. Its
  // server and database are asked once per transaction.
  return mySqlQueryHandle(SOURCE, async () => ({ connection, open: true, session: tx }))
}
