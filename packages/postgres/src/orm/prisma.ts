import { ValidationError } from '@txbox/core'
import { ADAPTER } from '../errors.js'
import {
  type PostgresQueryHandle,
  type PostgresStatement,
  postgresQueryHandle,
  wrongHandle,
} from '../query-handle.js'

/** The raw-SQL methods of a Prisma client (the interactive transaction's `tx` has them too). */
interface PrismaTransactionLike {
  $queryRawUnsafe?: (query: string, ...values: unknown[]) => Promise<unknown>
  $connect?: unknown
}

/**
 * A server error as Prisma's driver adapter reports it: the SQLSTATE kept in
 * `meta.driverAdapterError.cause.originalCode`, under Prisma's own code (P2010).
 */
interface PrismaDriverAdapterFailure {
  meta?: { driverAdapterError?: { cause?: { originalCode?: unknown; originalMessage?: unknown } } }
}

/**
 * The server's own error again (its SQLSTATE as `code`, Prisma's error as `cause`), so the store
 * classifies it as it classifies pg's: a deadlock stays a retryable conflict, a missing table
 * says to run migrate().
 */
const serverError = (error: unknown): unknown => {
  const cause = (error as PrismaDriverAdapterFailure | null)?.meta?.driverAdapterError?.cause
  if (typeof cause?.originalCode !== 'string') return error
  const message = typeof cause.originalMessage === 'string' ? cause.originalMessage : String(error)
  return Object.assign(new Error(message, { cause: error }), { code: cause.originalCode })
}

/** What Prisma throws for a query on an interactive transaction that has ended (error code P2028). */
const ENDED = /Transaction API error|Transaction already closed|P2028/

/**
 * The store's `{ tx }` for a Prisma interactive transaction on PostgreSQL (Prisma 7; tested
 * with `@prisma/adapter-pg`):
 * `await prisma.$transaction(async (tx) => { ...; await store.outbox.findOrCreate(event, { tx: prismaTransaction(tx) }) })`.
 * The store's statements run through `tx.$queryRawUnsafe`, inside the transaction.
 */
export const prismaTransaction = (tx: object): PostgresQueryHandle => {
  const candidate = tx as PrismaTransactionLike | null
  if (
    typeof candidate !== 'object' ||
    candidate === null ||
    typeof candidate.$queryRawUnsafe !== 'function'
  ) {
    throw wrongHandle(
      'prismaTransaction',
      'the `tx` that `prisma.$transaction(async (tx) => ...)` hands its callback',
      tx,
    )
  }
  // Prisma hides $connect (with $disconnect, $on, $extends) from an interactive transaction's
  // client; the PrismaClient itself has it. ($transaction is on both: Prisma 7 nests.)
  if (typeof candidate.$connect === 'function') {
    throw new ValidationError(
      ADAPTER,
      'prismaTransaction got the PrismaClient itself, not a transaction (it would autocommit the event): ' +
        'pass the `tx` that `prisma.$transaction(async (tx) => ...)` hands its callback',
    )
  }
  const queryRawUnsafe = candidate.$queryRawUnsafe.bind(tx)
  return postgresQueryHandle({
    description: 'a Prisma interactive transaction',
    session: tx,
    // Prisma refuses a query on a closed transaction itself (P2028): no server round trip.
    checkOpenOnServer: false,
    query: async <R>(statement: PostgresStatement) => {
      let rows: unknown
      try {
        rows = await queryRawUnsafe(statement.text, ...statement.values)
      } catch (error) {
        if (
          error instanceof Error &&
          ENDED.test(`${(error as { code?: unknown }).code ?? ''} ${error.message}`)
        ) {
          throw new ValidationError(
            ADAPTER,
            'tx (a Prisma interactive transaction) is already committed or rolled back: enqueue inside its callback',
            { cause: error },
          )
        }
        throw serverError(error)
      }
      const list = rows as R[]
      // $queryRawUnsafe answers rows only: every statement the store runs in a caller's
      // transaction returns a row per row it touched (RETURNING).
      return { rows: list, rowCount: list.length }
    },
  })
}
