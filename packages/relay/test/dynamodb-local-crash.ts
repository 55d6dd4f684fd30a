/**
 * A private DynamoDB Local (on disk) that can be crashed the way a DynamoDB node fails:
 * every client loses its connection at once, and no transaction it was told had succeeded
 * is lost.
 *
 * DynamoDB Local itself does not give that second half. Its TransactWriteItems answers
 * before the transaction's COMMIT has run: DynamoDB Local 2.6.1's
 * `SQLiteDBAccess.commitTransaction` hands the COMMIT to its one SQLite job queue and
 * returns without waiting for it, where every other write waits for its job. A SIGKILL in
 * that window loses a transaction the client already saw succeed. The ledger test hit it:
 * an inbox handler's transaction (ledger write + processed mark) was answered, so the
 * JetStream message was acked, and after the crash the inbox row was back to `processing`
 * with nothing left to redeliver it (lost 1, stuck 1). No client can guard against a store
 * that forgets acknowledged commits; real DynamoDB does not.
 *
 * So the crash first cuts every client off (a TCP proxy in front of the server drops all
 * connections and refuses new ones: requests in flight fail, as in a real crash, and may or
 * may not have been applied), then lets the queued COMMITs of the answered transactions
 * run, by writing one item straight to the server: its job queues behind them on the same
 * FIFO queue, so once it is answered they have run. Only then is the server SIGKILLed.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  CreateTableCommand,
  DynamoDBClient,
  type DynamoDBClientConfig,
  PutItemCommand,
} from '@aws-sdk/client-dynamodb'
import { PrivateService } from './harness.js'
import { LateProxy } from './tcp-proxy.js'

/** The table of the write that waits for DynamoDB Local's queued COMMITs. */
const BARRIER_TABLE = 'txbox_crash_barrier'

const localClient = (url: string, config: DynamoDBClientConfig = {}): DynamoDBClient =>
  new DynamoDBClient({
    endpoint: url,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    ...config,
  })

export class CrashableDynamoDbLocal {
  /** Where clients connect: the proxy, never the server itself. */
  readonly url: string
  readonly #server: PrivateService
  readonly #proxy: LateProxy
  readonly #dataDir: string
  /** Talks to the server directly, past the proxy: only the barrier write uses it. */
  readonly #direct: DynamoDBClient
  #barriers = 0

  private constructor(server: PrivateService, proxy: LateProxy, dataDir: string) {
    this.#server = server
    this.#proxy = proxy
    this.#dataDir = dataDir
    this.url = `http://127.0.0.1:${proxy.port}`
    this.#direct = localClient(`http://127.0.0.1:${server.port}`)
  }

  /** Starts DynamoDB Local on a fresh data directory (a restart keeps its tables) behind its proxy. */
  static async start(): Promise<CrashableDynamoDbLocal> {
    const dataDir = mkdtempSync(join(tmpdir(), 'txbox-dynamodb-local-'))
    const server = await PrivateService.create('dynamodb', { TXBOX_DYNAMODB_DB_PATH: dataDir })
    await server.up()
    const proxy = await LateProxy.to({ host: '127.0.0.1', port: server.port })
    await proxy.open()
    const local = new CrashableDynamoDbLocal(server, proxy, dataDir)
    await local.#direct.send(
      new CreateTableCommand({
        TableName: BARRIER_TABLE,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      }),
    )
    return local
  }

  /** A client of the server (through the proxy); the caller destroys it. */
  client(config: DynamoDBClientConfig = {}): DynamoDBClient {
    return localClient(this.url, config)
  }

  /**
   * Cuts every client off, lets the COMMITs of the transactions already answered run,
   * SIGKILLs the server, keeps it down for `downMs` and starts it again on the same data.
   * Returns when clients can connect again.
   */
  async crashAndRestart(downMs: number): Promise<void> {
    await this.#proxy.close()
    await this.#direct.send(
      new PutItemCommand({
        TableName: BARRIER_TABLE,
        Item: { pk: { S: `barrier-${++this.#barriers}` } },
      }),
    )
    await this.#server.crashAndRestart(downMs)
    await this.#proxy.open()
  }

  /** Stops the proxy and the server and removes the data. */
  async destroy(): Promise<void> {
    this.#direct.destroy()
    await this.#proxy.close()
    await this.#server.destroy()
    rmSync(this.#dataDir, { recursive: true, force: true })
  }
}
