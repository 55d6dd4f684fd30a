import { DataSource, type EntityManager } from 'typeorm'
import { typeormTransaction } from '../../src/orm/typeorm.js'
import { describeOrmIntegration } from './integration-cases.js'

describeOrmIntegration<EntityManager>(
  'TypeORM EntityManager (@txbox/postgres/typeorm)',
  async (databaseUrl) => {
    const dataSource = await new DataSource({ type: 'postgres', url: databaseUrl, poolSize: 2 }).initialize()
    return {
      transaction: (fn) => dataSource.transaction(fn),
      insertOrder: async (manager, schema, id) => {
        await manager.query(`INSERT INTO "${schema}".orders (id) VALUES ($1)`, [id])
      },
      handle: typeormTransaction,
      handleOfRoot: () => typeormTransaction(dataSource.manager),
      close: () => dataSource.destroy(),
    }
  },
)

describeOrmIntegration<EntityManager>(
  'TypeORM QueryRunner (@txbox/postgres/typeorm)',
  async (databaseUrl) => {
    const dataSource = await new DataSource({ type: 'postgres', url: databaseUrl, poolSize: 2 }).initialize()
    return {
      // A QueryRunner driven by hand: startTransaction, commit or rollback, release.
      transaction: async (fn) => {
        const runner = dataSource.createQueryRunner()
        await runner.connect()
        await runner.startTransaction()
        try {
          const result = await fn(runner.manager)
          await runner.commitTransaction()
          return result
        } catch (error) {
          await runner.rollbackTransaction()
          throw error
        } finally {
          await runner.release()
        }
      },
      insertOrder: async (manager, schema, id) => {
        await manager.query(`INSERT INTO "${schema}".orders (id) VALUES ($1)`, [id])
      },
      handle: (manager) => typeormTransaction(manager.queryRunner ?? manager),
      handleOfRoot: () => typeormTransaction(dataSource.createQueryRunner()),
      close: () => dataSource.destroy(),
    }
  },
)
