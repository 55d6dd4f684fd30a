import { DataSource, type EntityManager, type QueryRunner } from 'typeorm'
import { typeormTransaction } from '../../src/orm/typeorm.js'
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
