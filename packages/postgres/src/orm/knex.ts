import type { Knex } from 'knex'
import type { PostgresQueryHandle } from '../query-handle.js'
import { knexHandle } from './knex-handle.js'

/**
 * The store's `{ tx }` for a Knex transaction (Knex on `pg`):
 * `await knex.transaction(async (trx) => { ...; await store.outbox.findOrCreate(event, { tx: knexTransaction(trx) }) })`.
 */
export const knexTransaction = (trx: Knex.Transaction): PostgresQueryHandle =>
  knexHandle(trx, 'knexTransaction', 'a Knex transaction')
