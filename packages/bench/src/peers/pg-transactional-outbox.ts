import { randomUUID } from 'node:crypto'
import type { EnqueueParams } from '@txbox/core'
import type { JetStreamClient } from 'nats'
import pg from 'pg'
import {
  DatabaseSetup,
  type DatabaseSetupConfig,
  type GeneralMessageHandler,
  getDisabledLogger,
  getOutboxPollingListenerSettings,
  initializeMessageStorage,
  initializePollingMessageListener,
  type PollingListenerSettings,
  type TransactionalMessage,
} from 'pg-transactional-outbox'
import { uniqueName } from '../stores/names.js'

/** The npm package and version measured (the bench's dependency is pinned to it). */
export const PEER = 'pg-transactional-outbox'
export const PEER_VERSION = '0.5.7'

const NEXT_MESSAGES_FUNCTION = 'next_outbox_messages'

/**
 * How the peer's polling listener runs. `defaults`: what its own settings loader
 * (`getOutboxPollingListenerSettings`) returns for an environment that names only the schema,
 * table and function: 5 messages in flight, a poll every 500 ms, a 5 s lock, the poisonous
 * message and max attempts protections off (the outbox defaults of its README), messages
 * stored as `sequential` (its default), pg's default pool of 10 for the handlers. `tuned`: the
 * levers its README documents for throughput: messages stored as `parallel` ("if parallel
 * processing is fine"), a bigger batch, the README example's 250 ms polling interval, and a
 * handler pool as big as the batch. Batches of 20, 30, 50 and 100 (pool alike) were tried on
 * this machine at load ~12-17: 180-430 messages/s, all within the noise; 50 is the middle.
 */
export interface PeerListenerMode {
  readonly label: string
  readonly parallel: boolean
  readonly settings: Partial<PollingListenerSettings>
  readonly handlerPoolSize?: number
}

export const PEER_DEFAULTS: PeerListenerMode = { label: 'defaults', parallel: false, settings: {} }
export const PEER_TUNED: PeerListenerMode = {
  label: 'parallel messages, batch 50, poll 250 ms, handler pool 50',
  parallel: true,
  settings: { nextMessagesBatchSize: 50, nextMessagesPollingIntervalInMs: 250 },
  handlerPoolSize: 50,
}

/** The peer's message for one bench event: its id must be a UUID, the bench event id becomes the aggregate id. */
export const peerMessage = (event: EnqueueParams, parallel: boolean): TransactionalMessage => ({
  id: randomUUID(),
  aggregateType: 'order',
  aggregateId: event.eventId,
  messageType: event.subject,
  // A JSON text: pg sends it as is and the jsonb column parses it, as it would an object.
  payload: event.payload,
  ...(parallel ? { concurrency: 'parallel' as const } : {}),
})

/**
 * The peer in a schema of its own on the bench's PostgreSQL server: its outbox table, polling
 * function and indexes from its documented `DatabaseSetup` SQL, and an `orders` table for the
 * business insert of each transaction, like the txbox namespace's.
 */
export class PgTransactionalOutbox {
  readonly schema: string
  readonly #url: string
  readonly #pool: pg.Pool
  readonly #store: ReturnType<typeof initializeMessageStorage>
  #orderId = 0

  private constructor(url: string, schema: string, poolSize: number) {
    this.#url = url
    this.schema = schema
    this.#pool = new pg.Pool({ connectionString: url, max: poolSize })
    this.#store = initializeMessageStorage(
      { outboxOrInbox: 'outbox', settings: this.#settings() },
      getDisabledLogger(),
    )
  }

  static async open(url: string, poolSize: number): Promise<PgTransactionalOutbox> {
    const peer = new PgTransactionalOutbox(url, uniqueName('ptxo'), poolSize)
    try {
      const setup: DatabaseSetupConfig & { nextMessagesName: string } = {
        outboxOrInbox: 'outbox',
        database: '',
        schema: peer.schema,
        table: 'outbox',
        listenerRole: '',
        nextMessagesName: NEXT_MESSAGES_FUNCTION,
      }
      await peer.#pool.query(DatabaseSetup.dropAndCreateTable(setup))
      await peer.#pool.query(DatabaseSetup.createPollingFunction(setup))
      // Its index statements drop by unqualified name (the search path's schema), then create
      // in ours: scoped to this schema so parallel runs do not drop each other's.
      const client = await peer.#pool.connect()
      try {
        await client.query(`SET search_path TO "${peer.schema}"`)
        await client.query(DatabaseSetup.setupPollingIndexes(setup))
        await client.query('RESET search_path')
      } finally {
        client.release()
      }
      await peer.#pool.query(
        `CREATE TABLE "${peer.schema}".orders (id bigint PRIMARY KEY, ref text NOT NULL, total integer NOT NULL)`,
      )
      return peer
    } catch (error) {
      await peer.dispose().catch(() => undefined)
      throw error
    }
  }

  #settings(mode: PeerListenerMode = PEER_DEFAULTS): PollingListenerSettings {
    return {
      ...getOutboxPollingListenerSettings({
        TRX_DB_SCHEMA: this.schema,
        TRX_OUTBOX_DB_TABLE: 'outbox',
        TRX_NEXT_MESSAGES_FUNCTION_SCHEMA: this.schema,
        TRX_OUTBOX_NEXT_MESSAGES_FUNCTION_NAME: NEXT_MESSAGES_FUNCTION,
      }),
      ...mode.settings,
    }
  }

  /** BEGIN; business insert; the peer's storage function once per message; COMMIT. */
  readonly enqueueTx = async (messages: readonly TransactionalMessage[]): Promise<void> => {
    const client = await this.#pool.connect()
    try {
      await client.query('BEGIN')
      const id = ++this.#orderId
      await client.query(`INSERT INTO "${this.schema}".orders (id, ref, total) VALUES ($1, $2, $3)`, [
        id,
        `order-${id}`,
        100,
      ])
      for (const message of messages) await this.#store(message, client)
      await client.query('COMMIT')
    } catch (error) {
      await client.query('ROLLBACK')
      throw error
    } finally {
      client.release()
    }
  }

  /** Due messages for the drain, written in multi-row INSERTs outside the timing. */
  async prefill(messages: readonly TransactionalMessage[]): Promise<void> {
    for (let i = 0; i < messages.length; i += 500) {
      const group = messages.slice(i, i + 500)
      const params: unknown[] = []
      const rows = group.map((m, k) => {
        params.push(
          m.id,
          m.aggregateType,
          m.aggregateId,
          m.messageType,
          m.payload,
          m.concurrency ?? 'sequential',
        )
        const p = k * 6
        return `($${p + 1}, $${p + 2}, $${p + 3}, $${p + 4}, $${p + 5}, $${p + 6})`
      })
      await this.#pool.query(
        `INSERT INTO "${this.schema}".outbox (id, aggregate_type, aggregate_id, message_type, payload, concurrency) VALUES ${rows.join(', ')}`,
        params,
      )
    }
  }

  /** Messages the listener marked processed. */
  async processed(): Promise<number> {
    const { rows } = await this.#pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM "${this.schema}".outbox WHERE processed_at IS NOT NULL`,
    )
    return Number(rows[0]?.n ?? 0)
  }

  /**
   * Starts its polling listener with a handler that publishes each message to JetStream
   * (message id = Nats-Msg-Id, awaiting the PubAck) on `subject`; returns its shutdown.
   */
  listen(
    mode: PeerListenerMode,
    js: JetStreamClient,
    subject: string,
    onPublished: () => void,
  ): () => Promise<void> {
    const encoder = new TextEncoder()
    const publisher: GeneralMessageHandler = {
      async handle(message) {
        await js.publish(subject, encoder.encode(JSON.stringify(message.payload)), { msgID: message.id })
        onPublished()
      },
    }
    const [shutdown] = initializePollingMessageListener(
      {
        outboxOrInbox: 'outbox',
        dbListenerConfig: { connectionString: this.#url },
        ...(mode.handlerPoolSize === undefined
          ? {}
          : {
              dbHandlerConfig: { connectionString: this.#url, max: mode.handlerPoolSize } as pg.ClientConfig,
            }),
        settings: this.#settings(mode),
      },
      publisher,
      getDisabledLogger(),
    )
    return shutdown
  }

  async dispose(): Promise<void> {
    try {
      await this.#pool.query(`DROP SCHEMA IF EXISTS "${this.schema}" CASCADE`)
    } finally {
      await this.#pool.end()
    }
  }
}
