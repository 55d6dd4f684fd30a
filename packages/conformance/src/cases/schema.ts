import { expectSame, storedOutbox } from '../assertions.js'
import { defineCase } from '../case.js'
import { outboxEvent } from '../events.js'

export const schemaCases = [
  defineCase({
    id: 'schema.migrate-twice',
    title: 'migrate() run again, and twice at once, succeeds and keeps the data',
    async run({ store }) {
      await store.outbox.findOrCreate(outboxEvent('survives-migrate'))
      await store.migrate()
      await Promise.all([store.migrate(), store.migrate()])
      expectSame((await storedOutbox(store, 'survives-migrate')).status, 'pending', 'oracle: data kept')
      expectSame(
        (await store.outbox.findOrCreate(outboxEvent('after-migrate'))).status,
        'pending',
        'writes still work',
      )
      expectSame(await store.oracle.outboxCount(), 2, 'oracle: two rows')
    },
  }),
  defineCase({
    id: 'isolation.prefix',
    title: 'two stores with different namespaces never see each other',
    async run({ store, createStore }) {
      const other = await createStore()
      await store.outbox.findOrCreate(outboxEvent('shared-id', { payload: 'mine' }))
      await store.inbox.findOrCreate({ eventId: 'shared-msg', subject: 's', payload: 'mine' })
      expectSame(await other.outbox.get('shared-id'), null, 'the other outbox does not see it')
      expectSame(await other.inbox.get('shared-msg'), null, 'the other inbox does not see it')
      expectSame(await other.oracle.outboxCount(), 0, 'oracle: the other namespace is empty')
      expectSame((await other.outbox.getCountByStatus()).pending, 0, 'the other counts are zero')
      expectSame(
        (await other.outbox.findOrCreate(outboxEvent('shared-id', { payload: 'theirs' }))).payload,
        'theirs',
        'own copy',
      )
      expectSame(
        (await storedOutbox(store, 'shared-id')).payload,
        'mine',
        'oracle: the first store is unchanged',
      )
      expectSame(
        (await other.outbox.claim({ limit: 10, leaseMs: 1_000, workerId: 'w' })).length,
        1,
        'claims stay in the namespace',
      )
      expectSame(
        (await storedOutbox(store, 'shared-id')).status,
        'pending',
        'oracle: the first store was not claimed',
      )
    },
  }),
]
