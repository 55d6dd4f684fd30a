import type { Db, Document } from 'mongodb'
import type { WriteGuard } from './mongodb-options.js'

/** What the adapter learned about the server it talks to. */
export interface ServerRuntime {
  /** e.g. `MongoDB 7.0.14 (replica set rs0)` or `FerretDB v1.24.2 (MongoDB 7.0.77 wire)`. */
  readonly serverVersion: string
  /** FerretDB v1: its updates are not atomic and it lacks a few commands' edge cases (see ferretdb.ts). */
  readonly ferretdb: boolean
  /** True on a replica set or sharded cluster of MongoDB: `{ tx }` can be offered. */
  readonly transactions: boolean
  /** Why there are no transactions, when there are none. */
  readonly transactionsNote?: string
  /** The write guard in force (`auto` resolved). */
  readonly writeGuard: Exclude<WriteGuard, 'auto'>
}

/** Asks the server what it is (hello + buildInfo) and resolves the `auto` write guard. */
export const detectServer = async (db: Db, writeGuard: WriteGuard): Promise<ServerRuntime> => {
  let hello: Document
  try {
    hello = await db.command({ hello: 1 })
  } catch {
    // Servers older than MongoDB 4.4.2 know only the legacy name of the same command.
    hello = await db.command({ isMaster: 1 })
  }
  const build = await db.command({ buildInfo: 1 })
  const wireVersion = typeof build.version === 'string' ? build.version : 'unknown'
  const ferretdb = typeof build.ferretdbVersion === 'string'
  const replicaSet = typeof hello.setName === 'string' ? hello.setName : undefined
  const sharded = hello.msg === 'isdbgrid'
  const sessions =
    hello.logicalSessionTimeoutMinutes !== undefined && hello.logicalSessionTimeoutMinutes !== null
  const topology = replicaSet !== undefined ? `replica set ${replicaSet}` : sharded ? 'sharded' : 'standalone'
  const serverVersion = ferretdb
    ? `FerretDB ${String(build.ferretdbVersion)} (MongoDB ${wireVersion} wire)`
    : `MongoDB ${wireVersion} (${topology})`
  const guard = writeGuard === 'auto' ? (ferretdb ? 'lock-collection' : 'native') : writeGuard
  if (ferretdb) {
    return {
      serverVersion,
      ferretdb,
      transactions: false,
      transactionsNote: 'FerretDB v1 has no multi-document transactions',
      writeGuard: guard,
    }
  }
  if ((replicaSet === undefined && !sharded) || !sessions) {
    return {
      serverVersion,
      ferretdb,
      transactions: false,
      transactionsNote:
        'a standalone mongod has no transactions: run a replica set (a single node is enough) or a sharded cluster',
      writeGuard: guard,
    }
  }
  return { serverVersion, ferretdb, transactions: true, writeGuard: guard }
}
