import type { EntityManager } from '@mikro-orm/core'
import { ValidationError } from '@txbox/core'
import { ADAPTER } from '../errors.js'
import { type PostgresQueryHandle, wrongHandle } from '../query-handle.js'
import { knexHandle } from './knex-handle.js'

interface EntityManagerLike {
  isInTransaction?: () => boolean
  getTransactionContext?: () => unknown
}

/**
 * The store's `{ tx }` for a MikroORM 6 transaction on PostgreSQL (`@mikro-orm/postgresql`):
 * `await em.transactional(async (em) => { ...; await store.outbox.findOrCreate(event, { tx: mikroOrmTransaction(em) }) })`.
 * MikroORM 6 runs its transactions on Knex: the store's statements run on that Knex
 * transaction's pg connection. Flush your entities (`em.flush()`) in the same callback.
 */
export const mikroOrmTransaction = (em: EntityManager): PostgresQueryHandle => {
  const candidate = em as unknown as EntityManagerLike | null
  if (
    typeof candidate !== 'object' ||
    candidate === null ||
    typeof candidate.isInTransaction !== 'function' ||
    typeof candidate.getTransactionContext !== 'function'
  ) {
    throw wrongHandle(
      'mikroOrmTransaction',
      'the EntityManager that `em.transactional(async (em) => ...)` hands its callback',
      em,
    )
  }
  if (!candidate.isInTransaction()) {
    throw new ValidationError(
      ADAPTER,
      'mikroOrmTransaction got an EntityManager that is not inside a transaction (it would autocommit the event): ' +
        'pass the `em` that `em.transactional(async (em) => ...)` hands its callback',
    )
  }
  const context = candidate.getTransactionContext() as { isCompleted?: unknown } | undefined
  if (typeof context?.isCompleted !== 'function') {
    throw new ValidationError(
      ADAPTER,
      'mikroOrmTransaction supports MikroORM 6, whose transactions run on Knex; this EntityManager ' +
        'holds another kind of transaction (MikroORM 7 runs on Kysely: not supported yet)',
    )
  }
  return knexHandle(context, 'mikroOrmTransaction', 'a MikroORM transaction')
}
