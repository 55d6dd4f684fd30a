import { ManualClock } from '@txbox/core'
import type { Pool, PoolOptions } from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MySqlStore } from '../src/index.js'
import { freshStore, makePool, SKIP, SKIP_REASON } from './helpers.js'

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0, 123)
const delivery = (eventId: string) => ({ eventId, subject: 'orders.created', payload: '{}' })

// An UPDATE that leaves every value as it was reports 0 rows without CLIENT_FOUND_ROWS: the
// inbox marks must not read that as a refused fence.
describe.skipIf(SKIP)(
  `mysql inbox marks and the row count${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`,
  () => {
    for (const [flagName, options] of [
      ['CLIENT_FOUND_ROWS (mysql2 default)', {}],
      ['without CLIENT_FOUND_ROWS', { flags: ['-FOUND_ROWS'] }],
    ] as const satisfies readonly (readonly [string, Partial<PoolOptions>])[]) {
      describe(flagName, () => {
        let pool: Pool
        let store: MySqlStore
        let drop: () => Promise<void>
        const clock = new ManualClock(T0)

        beforeAll(async () => {
          pool = makePool({ ...options, connectionLimit: 2 })
          ;({ store, drop } = await freshStore(pool, { clock: clock.now }))
        })

        afterAll(async () => {
          await drop?.()
          await pool?.end()
        })

        it('an unfenced markAsProcessed of a processed message at the same instant succeeds; markAsFailed leaves it processed', async () => {
          await store.inbox.findOrCreate(delivery('twice'))
          await store.inbox.markAsProcessed('twice')
          await expect(store.inbox.markAsProcessed('twice')).resolves.toBeUndefined()
          await expect(store.inbox.markAsFailed('twice', 'late')).resolves.toBeUndefined()
          expect(await store.inbox.get('twice')).toMatchObject({
            status: 'processed',
            processedAt: new Date(T0),
          })
        })
      })
    }
  },
)
