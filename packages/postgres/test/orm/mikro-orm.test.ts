import { type EntityManager, MikroORM, PostgreSqlDriver } from '@mikro-orm/postgresql'
import { mikroOrmTransaction } from '../../src/orm/mikro-orm.js'
import { describeOrmIntegration } from './integration-cases.js'

describeOrmIntegration<EntityManager>(
  'MikroORM 6 transactions (@txbox/postgres/mikro-orm)',
  async (databaseUrl) => {
    const orm = await MikroORM.init({
      driver: PostgreSqlDriver,
      clientUrl: databaseUrl,
      entities: [],
      discovery: { warnWhenNoEntities: false },
      pool: { min: 0, max: 2 },
    })
    return {
      transaction: (fn) => orm.em.fork().transactional((em) => fn(em as EntityManager)),
      insertOrder: async (em, schema, id) => {
        await em.execute(`INSERT INTO "${schema}".orders (id) VALUES (?)`, [id])
      },
      handle: mikroOrmTransaction,
      handleOfRoot: () => mikroOrmTransaction(orm.em.fork()),
      close: () => orm.close(true),
    }
  },
)
