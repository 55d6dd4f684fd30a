import { Sequelize, type Transaction } from 'sequelize'
import { sequelizeTransaction } from '../../src/orm/sequelize.js'
import { describeOrmIntegration } from './harness.js'

describeOrmIntegration('Sequelize (mysql)', async ({ url, table }) => {
  const sequelize = new Sequelize(url, {
    dialect: 'mysql',
    logging: false,
    dialectOptions: { charset: 'utf8mb4_bin' },
    pool: { max: 3 },
  })
  // Never connects: only its dialect is looked at.
  const postgres = new Sequelize('postgres://nobody@127.0.0.1:1/none', {
    dialect: 'postgres',
    logging: false,
  })
  return {
    transaction: (fn) =>
      sequelize.transaction((transaction) =>
        fn({
          insert: async (id) => {
            await sequelize.query(`INSERT INTO \`${table}\` (id) VALUES (?)`, {
              replacements: [id],
              transaction,
            })
          },
          tx: sequelizeTransaction(transaction),
        }),
      ),
    ended: async () => {
      let kept: Transaction | undefined
      await sequelize.transaction(async (transaction) => {
        kept = transaction
      })
      return sequelizeTransaction(kept as Transaction)
    },
    wrongInputs: [
      ['the Sequelize instance', () => sequelizeTransaction(sequelize as unknown as Transaction)],
      ['a plain object', () => sequelizeTransaction({} as Transaction)],
      [
        'a transaction of another dialect',
        () =>
          sequelizeTransaction({ sequelize: postgres, commit: () => undefined } as unknown as Transaction),
      ],
    ],
    close: async () => {
      await sequelize.close()
      await postgres.close()
    },
  }
})
