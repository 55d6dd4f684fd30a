/**
 * The proof that the whole path is exactly-once in effect under crashes and faults, on every
 * store: outbox (in business transactions, some rolled back) -> txbox-relay child processes
 * (SIGKILLed mid-batch) -> NATS (a private nats-server stopped and restarted; a private
 * 3-node cluster with an R3 stream whose leader is SIGKILLed) -> InboxProcessor (handler
 * failing transiently) -> a ledger written with the processed mark. MySQL, FerretDB and
 * DynamoDB Local run as private servers that are SIGKILLed and restarted mid-drain.
 * The scenario is ledger-scenario.ts, the stores ledger-stores.ts; docs/RELIABILITY.md has
 * a measured run.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildRelay, freePort, NatsCluster, NatsServerProcess, natsServerAvailable } from './harness.js'
import {
  type Broker,
  clusterWithNodeKill,
  loneServer,
  type Plan,
  runLedgerScenario,
} from './ledger-scenario.js'
import {
  type OpenedPair,
  openDynamo,
  openMongo,
  openMySql,
  openPostgres,
  openRedis,
  openSqlite,
} from './ledger-stores.js'

const required = process.env.TXBOX_REQUIRE_ALL === '1'
const postgresUrl = process.env.TXBOX_POSTGRES_URL
const redisUrl = process.env.TXBOX_REDIS_URL
const haveNats = natsServerAvailable()

/** What one store case needs from the environment, by name. */
const missing = (needs: Record<string, string | undefined>): string[] => [
  ...(haveNats ? [] : ['the nats-server binary (scripts/services.sh installs it)']),
  ...Object.entries(needs)
    .filter(([, value]) => value === undefined)
    .map(([name]) => name),
]

interface StoreCase {
  title: string
  /**
   * Variables it needs. A private server needs the binaries `scripts/services.sh up` installs;
   * the shared server's URL stands for "services.sh has run for this engine here".
   */
  needs: Record<string, string | undefined>
  plan: Plan
  minCommitted: number
  open(): Promise<OpenedPair<never>>
}

const SMALL: Plan = { transactions: 100, eventsPerTransaction: 8, rollbackEvery: 6 }

const STORES: StoreCase[] = [
  {
    title: 'PostgreSQL outbox -> relays -> NATS -> PostgreSQL inbox',
    needs: { TXBOX_POSTGRES_URL: postgresUrl },
    plan: { transactions: 250, eventsPerTransaction: 10, rollbackEvery: 8 },
    minCommitted: 2_000,
    open: () => openPostgres(postgresUrl as string) as Promise<OpenedPair<never>>,
  },
  {
    title: 'SQLite file outbox -> relays -> NATS -> SQLite inbox',
    needs: {},
    plan: SMALL,
    minCommitted: 600,
    open: () => openSqlite() as Promise<OpenedPair<never>>,
  },
  {
    title: 'Redis outbox -> relays -> NATS -> Redis inbox',
    needs: { TXBOX_REDIS_URL: redisUrl },
    plan: SMALL,
    minCommitted: 600,
    open: () => openRedis(redisUrl as string) as Promise<OpenedPair<never>>,
  },
  {
    title: 'MariaDB outbox -> relays -> NATS -> MariaDB inbox, server crashed mid-drain',
    needs: { TXBOX_MYSQL_URL: process.env.TXBOX_MYSQL_URL },
    plan: SMALL,
    minCommitted: 600,
    open: () => openMySql() as Promise<OpenedPair<never>>,
  },
  {
    title: 'FerretDB outbox -> relays -> NATS -> FerretDB inbox, FerretDB crashed mid-drain',
    // Its private FerretDB stores into a database of the shared PostgreSQL.
    needs: { TXBOX_POSTGRES_URL: postgresUrl, TXBOX_MONGODB_URL: process.env.TXBOX_MONGODB_URL },
    plan: { transactions: 60, eventsPerTransaction: 6, rollbackEvery: 6 },
    minCommitted: 250,
    open: () => openMongo(postgresUrl as string) as Promise<OpenedPair<never>>,
  },
  {
    title: 'DynamoDB Local outbox -> relays -> NATS -> DynamoDB Local inbox, server crashed mid-drain',
    needs: { TXBOX_DYNAMODB_URL: process.env.TXBOX_DYNAMODB_URL },
    // DynamoDB Local on disk is the slowest store here (about 10 enqueues/s of 8 events under load).
    plan: { transactions: 60, eventsPerTransaction: 6, rollbackEvery: 6 },
    minCommitted: 250,
    open: () => openDynamo() as Promise<OpenedPair<never>>,
  },
]

const runCase = async (store: StoreCase, broker: Broker): Promise<void> => {
  const opened = await store.open()
  try {
    const figures = await runLedgerScenario(opened.pair, broker, store.plan)
    expect(figures.committed).toBeGreaterThan(store.minCommitted)
  } finally {
    await opened.close()
  }
}

describe('ledger: outbox -> relay -> NATS -> inbox, exactly once in effect under crashes and faults', () => {
  let nats: NatsServerProcess | undefined
  let cluster: NatsCluster | undefined
  let stateDir: string | undefined
  let built = false

  beforeAll(async () => {
    if (!haveNats) return
    stateDir = mkdtempSync(join(tmpdir(), 'txbox-ledger-nats-'))
    nats = new NatsServerProcess(await freePort(), join(stateDir, 'lone'))
    cluster = await NatsCluster.create(join(stateDir, 'cluster'))
    await Promise.all([nats.start(), cluster.start()])
    buildRelay()
    built = true
  }, 300_000)

  afterAll(async () => {
    await Promise.all([nats?.stop(), cluster?.stop()])
    if (stateDir) rmSync(stateDir, { recursive: true, force: true })
  })

  for (const store of STORES) {
    const lacking = missing(store.needs)
    it.skipIf(lacking.length > 0 && !required)(
      `${store.title}${lacking.length > 0 ? ` (missing: ${lacking.join(', ')})` : ''}`,
      async () => {
        if (lacking.length > 0) throw new Error(`TXBOX_REQUIRE_ALL=1 but missing ${lacking.join(', ')}`)
        expect(built).toBe(true)
        await runCase(store, loneServer(nats as NatsServerProcess))
      },
      300_000,
    )
  }

  // Beyond one machine's single broker: the same scenario on PostgreSQL, against a 3-node
  // cluster and an R3 stream, the stream leader SIGKILLed and restarted mid-run.
  const pgCase = STORES[0] as StoreCase
  const clusterLacking = missing(pgCase.needs)
  it.skipIf(clusterLacking.length > 0 && !required)(
    `PostgreSQL pair against a 3-node NATS cluster (R3 stream, leader killed)${clusterLacking.length > 0 ? ` (missing: ${clusterLacking.join(', ')})` : ''}`,
    async () => {
      if (clusterLacking.length > 0)
        throw new Error(`TXBOX_REQUIRE_ALL=1 but missing ${clusterLacking.join(', ')}`)
      expect(built).toBe(true)
      await runCase(pgCase, clusterWithNodeKill(cluster as NatsCluster))
    },
    300_000,
  )
})
