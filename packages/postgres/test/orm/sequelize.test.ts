import { Sequelize, type Transaction } from 'sequelize'
import { sequelizeTransaction } from '../../src/orm/sequelize.js'
import { describeOrmIntegration } from './integration-cases.js'

describeOrmIntegration<Transaction>('Sequelize transactions (@txbox/postgres/sequelize)', (databaseUrl) => {
  const sequelize = new Sequelize(databaseUrl, { dialect: 'postgres', logging: false, pool: { max: 2 } })
  return {
    transaction: (fn) => sequelize.transaction(fn),
    insertOrder: async (transaction, schema, id) => {
      await sequelize.query(`INSERT INTO "${schema}".orders (id) VALUES ($1)`, { bind: [id], transaction })
    },
    handle: sequelizeTransaction,
    handleOfRoot: () => sequelizeTransaction(sequelize as unknown as Transaction),
    close: () => sequelize.close(),
  }
})
