import { ValidationError } from '@txbox/core'
import { DataSource, type EntityManager, type QueryRunner } from 'typeorm'
import { describe, expect, it } from 'vitest'
import { typeormTransaction } from '../../src/orm/typeorm.js'
import { freshStore, MYSQL_URL, makePool, SKIP, SKIP_REASON } from '../helpers.js'
import { describeOrmIntegration } from './harness.js'

describeOrmIntegration('TypeORM (mysql)', async ({ url, table }) => {
  const dataSource = new DataSource({ type: 'mysql', url, charset: 'utf8mb4_bin', poolSize: 3 })
  await dataSource.initialize()
  return {
    transaction: (fn) =>
      dataSource.transaction((manager) =>
        fn({
          insert: async (id) => {
            await manager.createQueryBuilder().insert().into(table).values({ id }).execute()
          },
          tx: typeormTransaction(manager),
        }),
      ),
    ended: async () => {
      let kept: EntityManager | undefined
      await dataSource.transaction(async (manager) => {
        kept = manager
      })
      return typeormTransaction(kept as EntityManager)
    },
    wrongInputs: [
      ['the data source manager, outside a transaction', () => typeormTransaction(dataSource.manager)],
      ['a plain object', () => typeormTransaction({} as QueryRunner)],
      [
        'a runner of a postgres data source',
        () =>
          typeormTransaction({
            isTransactionActive: true,
            connection: { options: { type: 'postgres' } },
          } as unknown as QueryRunner),
      ],
    ],
    close: () => dataSource.destroy(),
  }
})

describe.skipIf(SKIP)(`TypeORM QueryRunner${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`, () => {
  it('takes a QueryRunner inside startTransaction(), and refuses one before it and after its commit', async () => {
    const pool = makePool({ connectionLimit: 3 })
    const { store, drop } = await freshStore(pool)
    const dataSource = new DataSource({
      type: 'mysql',
      url: MYSQL_URL as string,
      charset: 'utf8mb4_bin',
      poolSize: 2,
    })
    await dataSource.initialize()
    const runner = dataSource.createQueryRunner()
    try {
      await runner.connect()
      const early = await store.outbox
        .findOrCreate({ eventId: 'qr-early', subject: 's', payload: 'p' }, { tx: typeormTransaction(runner) })
        .catch((caught: unknown) => caught)
      expect(early).toBeInstanceOf(ValidationError)
      expect((early as Error).message).toMatch(/never started \(queryRunner.startTransaction\(\)\)/)

      await runner.startTransaction()
      await store.outbox.findOrCreate(
        { eventId: 'qr-1', subject: 's', payload: 'p' },
        { tx: typeormTransaction(runner) },
      )
      expect(await store.outbox.get('qr-1')).toBeNull()
      await runner.commitTransaction()
      expect((await store.outbox.get('qr-1'))?.status).toBe('pending')

      await expect(
        store.outbox.findOrCreate(
          { eventId: 'qr-late', subject: 's', payload: 'p' },
          { tx: typeormTransaction(runner) },
        ),
      ).rejects.toBeInstanceOf(ValidationError)
      expect(await store.outbox.get('qr-early')).toBeNull()
      expect(await store.outbox.get('qr-late')).toBeNull()
    } finally {
      await runner.release()
      await dataSource.destroy()
      await drop()
      await pool.end()
    }
  })
})
