import { ValidationError } from '@txbox/core'
import knex from 'knex'
import { Sequelize } from 'sequelize'
import { DataSource } from 'typeorm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { PostgresQueryHandle } from '../../src/index.js'
import { drizzleTransaction } from '../../src/orm/drizzle.js'
import { knexTransaction } from '../../src/orm/knex.js'
import { kyselyTransaction } from '../../src/orm/kysely.js'
import { mikroOrmTransaction } from '../../src/orm/mikro-orm.js'
import { postgresJsTransaction } from '../../src/orm/postgres-js.js'
import { prismaTransaction } from '../../src/orm/prisma.js'
import { sequelizeTransaction } from '../../src/orm/sequelize.js'
import { typeormTransaction } from '../../src/orm/typeorm.js'
import {
  createNamespace,
  event,
  inTransaction,
  type Namespace,
  noServer,
  skipReason,
  url,
} from '../helpers.js'

/** Every integration, called on something that is not its ORM's transaction. */
const integrations: readonly (readonly [string, (value: never) => PostgresQueryHandle, RegExp])[] = [
  ['postgresJsTransaction', postgresJsTransaction, /postgres\.js `sql\.begin/],
  ['knexTransaction', knexTransaction, /a Knex transaction/],
  ['kyselyTransaction', kyselyTransaction, /a Kysely transaction/],
  ['drizzleTransaction', drizzleTransaction, /a Drizzle transaction/],
  ['typeormTransaction', typeormTransaction, /EntityManager that `dataSource\.transaction/],
  ['sequelizeTransaction', sequelizeTransaction, /`sequelize\.transaction/],
  ['mikroOrmTransaction', mikroOrmTransaction, /`em\.transactional/],
  ['prismaTransaction', prismaTransaction, /`prisma\.\$transaction/],
]

describe.skipIf(noServer)(
  `handles from the wrong library${noServer ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    let ns: Namespace
    beforeAll(async () => {
      ns = await createNamespace()
    })
    afterAll(async () => {
      await ns?.dispose()
    })

    it.each(integrations)(
      '%s refuses a pg client inside BEGIN (another library), naming what it expects',
      async (name, integration, expected) => {
        await inTransaction(
          ns.pool,
          async (client) => {
            const attempt = () => integration(client as never)
            expect(attempt).toThrow(ValidationError)
            expect(attempt).toThrow(
              new RegExp(`^\\[txbox\\] \\[postgres\\] ${name} expects .*; got a Client`),
            )
            expect(attempt).toThrow(expected)
          },
          'ROLLBACK',
        )
        for (const value of [undefined, null, 'tx', 42, {}]) {
          expect(() => integration(value as never)).toThrow(ValidationError)
        }
      },
    )

    it('an ORM transaction passed as { tx } without its integration is refused, pointing at the integration', async () => {
      const db = knex({ client: 'pg', connection: url as string, pool: { min: 0, max: 1 } })
      try {
        await db.transaction(async (trx) => {
          const attempt = ns.store.outbox.findOrCreate(event('bare-trx'), { tx: trx as never })
          await expect(attempt).rejects.toThrow(ValidationError)
          await expect(attempt).rejects.toThrow(
            /got a function.*knexTransaction\(trx\)|knexTransaction\(trx\).*got a function/,
          )
        })
      } finally {
        await db.destroy()
      }
      expect(await ns.store.outbox.get('bare-trx')).toBeNull()
    })
  },
)

const mysqlUrl = process.env.TXBOX_MYSQL_URL

describe.skipIf(mysqlUrl === undefined)(
  `the right ORM on another database driver (MariaDB)${mysqlUrl === undefined ? ' (skipped: TXBOX_MYSQL_URL is not set)' : ''}`,
  () => {
    it('knexTransaction refuses a Knex transaction on mysql2', async () => {
      const db = knex({ client: 'mysql2', connection: mysqlUrl as string, pool: { min: 0, max: 1 } })
      try {
        await db.transaction(async (trx) => {
          expect(() => knexTransaction(trx)).toThrow(ValidationError)
          expect(() => knexTransaction(trx)).toThrow(
            /on the "mysql2" driver; @txbox\/postgres needs Knex's "pg" client/,
          )
        })
      } finally {
        await db.destroy()
      }
    })

    it('sequelizeTransaction refuses a transaction of the mysql dialect', async () => {
      const sequelize = new Sequelize(mysqlUrl as string, { dialect: 'mysql', logging: false })
      try {
        await sequelize.transaction(async (t) => {
          expect(() => sequelizeTransaction(t)).toThrow(
            /on "mysql"; @txbox\/postgres needs the "postgres" dialect/,
          )
        })
      } finally {
        await sequelize.close()
      }
    })

    it('typeormTransaction refuses a transaction of a mysql DataSource', async () => {
      const dataSource = await new DataSource({ type: 'mysql', url: mysqlUrl as string }).initialize()
      try {
        await dataSource.transaction(async (manager) => {
          expect(() => typeormTransaction(manager)).toThrow(
            /on a "mysql" DataSource; @txbox\/postgres needs type "postgres"/,
          )
        })
      } finally {
        await dataSource.destroy()
      }
    })
  },
)
