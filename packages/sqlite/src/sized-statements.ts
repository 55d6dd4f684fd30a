import type { Statement } from 'better-sqlite3'
import type { SqliteDatabase } from './sqlite-options.js'

/** How many shapes of a sized statement one repository keeps prepared. */
export const SIZED_STATEMENTS = 16

/**
 * Prepared statements whose text depends on a count (a multi-row INSERT of n rows). Only the
 * {@link SIZED_STATEMENTS} shapes used last stay prepared: a caller that sends batches of one
 * size prepares its statement once, and one whose sizes vary does not grow the cache without
 * bound. Prepared on first use, like the repositories' fixed statements (after `migrate()`).
 */
export class SizedStatements<Row> {
  readonly #db: SqliteDatabase
  readonly #text: (count: number) => string
  readonly #prepared = new Map<number, Statement<unknown[], Row>>()

  constructor(db: SqliteDatabase, text: (count: number) => string) {
    this.#db = db
    this.#text = text
  }

  /** The statement for `count`; integers read as numbers, as SqliteClient's statements. */
  for(count: number): Statement<unknown[], Row> {
    let statement = this.#prepared.get(count)
    if (statement === undefined) {
      statement = this.#db.prepare<unknown[], Row>(this.#text(count)).safeIntegers(false)
      const oldest = this.#prepared.keys().next()
      if (this.#prepared.size >= SIZED_STATEMENTS && oldest.done !== true) this.#prepared.delete(oldest.value)
    } else {
      // A Map iterates in insertion order: inserting the shape again marks it as used last.
      this.#prepared.delete(count)
    }
    this.#prepared.set(count, statement)
    return statement
  }
}
