import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { STORE_KINDS, type StoreKind, storeRegistration } from '@txbox/core'
import { countPerCall, timePair } from './harness.js'
import { runLatency } from './latency.js'
import { loadAverage, machineInfo } from './machine.js'
import { runMemory } from './memory.js'
import { runPeers } from './peers/run-peers.js'
import { hasRawRelay, KEYED_RELAY, LOCKSTEP_RELAY, runRelay, TUNED_RELAY } from './relay-e2e.js'
import { writeDocs } from './report.js'
import type { RelayRow, Results, ScenarioRow } from './results.js'
import { type RetentionRow, runEnqueueCost, runRetention } from './retention.js'
import { makeWork, NotRun, SCENARIO_INFO, SCENARIOS, type ScenarioName } from './scenarios.js'
import type { Target } from './types.js'

const here = dirname(fileURLToPath(import.meta.url))
const packageRoot = join(here, '..')
const repoRoot = join(packageRoot, '..', '..')

interface Options {
  stores: StoreKind[]
  scenarios: ScenarioName[]
  quick: boolean
  runs: number
  relay: boolean
  e2e: boolean
  memory: boolean
  peers: boolean
  docs: boolean
}

const usage = `pnpm bench [-- options]
  --stores a,b        only these stores (${STORE_KINDS.join(', ')})
  --scenarios a,b     only these scenarios (${SCENARIOS.join(', ')}, relay, e2e, memory, peers)
  --quick             a tenth of the work and 2 runs: a smoke check, not numbers to publish
  --runs N            timed runs per scenario and side (default 5)
  --docs / --no-docs  write docs/BENCHMARKS.md and docs/benchmarks.svg (default: only on a full run)
  --retention         instead of all this: PostgreSQL retention over 5,000,000 sent events, row
                      deletes vs daily partition drops (several minutes; --quick: 500,000;
                      --retention-events N to choose); results in results/retention.json`

const parseList = <T extends string>(value: string | undefined, allowed: readonly T[], flag: string): T[] => {
  const items = (value ?? '').split(',').filter((item) => item.length > 0)
  for (const item of items) {
    if (!allowed.includes(item as T))
      throw new Error(`${flag}: unknown "${item}" (one of ${allowed.join(', ')})`)
  }
  return items as T[]
}

/**
 * Run after the adapter-vs-raw ones: the relay's drain, end to end, memory, and txbox vs raw
 * vs the peers on PostgreSQL.
 */
const EXTRA_SCENARIOS = ['relay', 'e2e', 'memory', 'peers'] as const

/** The stores of the end-to-end run (issue 16 asks for PostgreSQL at least). */
const E2E_STORES: readonly StoreKind[] = ['postgres', 'sqlite', 'redis']

const parseOptions = (argv: readonly string[]): Options => {
  const args = argv.filter((arg) => arg !== '--')
  const value = (flag: string): string | undefined => {
    const index = args.indexOf(flag)
    return index === -1 ? undefined : args[index + 1]
  }
  if (args.includes('--help') || args.includes('-h')) {
    console.log(usage)
    process.exit(0)
  }
  const stores = parseList(value('--stores'), STORE_KINDS, '--stores')
  const scenarios = parseList(
    value('--scenarios'),
    [...SCENARIOS, ...EXTRA_SCENARIOS] as const,
    '--scenarios',
  )
  const quick = args.includes('--quick')
  const runs = Number(value('--runs') ?? (quick ? 2 : 5))
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer')
  const filtered = stores.length > 0 || scenarios.length > 0
  const docs = args.includes('--docs') ? true : args.includes('--no-docs') ? false : !filtered && !quick
  return {
    stores: stores.length > 0 ? stores : [...STORE_KINDS],
    scenarios:
      scenarios.length > 0
        ? (scenarios.filter((s) => !(EXTRA_SCENARIOS as readonly string[]).includes(s)) as ScenarioName[])
        : [...SCENARIOS],
    quick,
    runs,
    relay: scenarios.length === 0 || scenarios.includes('relay'),
    e2e: scenarios.length === 0 || scenarios.includes('e2e'),
    memory: scenarios.length === 0 || scenarios.includes('memory'),
    peers: scenarios.length === 0 || scenarios.includes('peers'),
    docs,
  }
}

/**
 * Where each store's target comes from. Every kind of the core registry needs one (the
 * compiler says so), and the import is dynamic so an adapter that fails to build costs one row.
 */
const TARGETS: Record<StoreKind, () => Promise<(url: string) => Promise<Target>>> = {
  sqlite: async () => (await import('./stores/sqlite.js')).sqliteTarget,
  postgres: async () => (await import('./stores/postgres.js')).postgresTarget,
  mysql: async () => (await import('./stores/mysql.js')).mySqlTarget,
  mongodb: async () => (await import('./stores/mongodb.js')).mongoDbTarget,
  redis: async () => (await import('./stores/redis.js')).redisTarget,
  dynamodb: async () => (await import('./stores/dynamodb.js')).dynamoDbTarget,
}

/** The variable holding a store's URL (`TXBOX_POSTGRES_URL`); none for SQLite, which takes a file the bench creates. */
const urlVariable = (store: StoreKind): string | undefined =>
  storeRegistration(store).schemes.length === 0 ? undefined : `TXBOX_${store.toUpperCase()}_URL`

const messageOf = (error: unknown): string =>
  (error instanceof Error ? error.message : String(error)).split('\n')[0]?.slice(0, 160) ?? 'unknown error'

const withTimeout = async <T>(promise: Promise<T>, ms: number, what: string): Promise<T> => {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Connects to a store, or says why not. A store whose adapter fails to import = "build failed". */
export const connect = async (store: StoreKind): Promise<Target | string> => {
  const variable = urlVariable(store)
  const url = variable === undefined ? undefined : process.env[variable]
  if (variable !== undefined && !url) return `${variable} is not set`
  let loader: (url: string) => Promise<Target>
  try {
    loader = await TARGETS[store]()
  } catch (error) {
    return `build failed (${messageOf(error)})`
  }
  try {
    return await withTimeout(loader(url ?? ''), 15_000, `${store} at ${variable}`)
  } catch (error) {
    return `server unreachable (${messageOf(error)})`
  }
}

const log = (line: string): void => {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`)
}

/** A hung server must cost one row, not the whole run: each scenario gets a deadline. */
const SCENARIO_DEADLINE_MS = 180_000

const runScenario = async (
  target: Target,
  scenario: ScenarioName,
  options: Options,
): Promise<ScenarioRow> => {
  try {
    return await withTimeout(
      measureScenario(target, scenario, options),
      SCENARIO_DEADLINE_MS,
      `${target.name} ${scenario}`,
    )
  } catch (error) {
    return { scenario, store: target.name, notRun: messageOf(error) }
  }
}

const measureScenario = async (
  target: Target,
  scenario: ScenarioName,
  options: Options,
): Promise<ScenarioRow> => {
  const info = SCENARIO_INFO[scenario]
  const perRun = (factor: number) =>
    Math.max(100, Math.round((info.events * target.scale * factor) / 100) * 100)
  const events = perRun(options.quick ? 0.1 : 1)
  const runs = Math.min(options.runs, target.maxRuns ?? options.runs)
  let ns: Awaited<ReturnType<Target['namespace']>>
  try {
    ns = await target.namespace()
  } catch (error) {
    return { scenario, store: target.name, notRun: `failed: ${messageOf(error)}` }
  }
  try {
    const timing = await timePair(async (run) => {
      const tag = `${scenario}-${run < 0 ? 'w' : run}`
      return {
        adapter: await makeWork(scenario, ns, 'adapter', events, tag),
        raw: await makeWork(scenario, ns, 'raw', events, tag),
      }
    }, runs)
    // Round trips per call, counted on a separate short pass so counting costs no timed work.
    const small =
      scenario.startsWith('drain') || scenario === 'enqueue-batch' || scenario === 'enqueue-tx-100'
        ? 1000
        : 50
    const adapterPerCall = await countPerCall(
      await makeWork(scenario, ns, 'adapter', small, 'count'),
      target.counter,
    )
    const rawPerCall = await countPerCall(await makeWork(scenario, ns, 'raw', small, 'count'), target.counter)
    return {
      scenario,
      store: target.name,
      adapter: timing.adapter.median,
      raw: timing.raw.median,
      ratio: timing.adapter.median / timing.raw.median,
      adapterPerCall,
      rawPerCall,
      unit: target.counter.unit,
      events,
      runs,
    }
  } catch (error) {
    if (error instanceof NotRun) return { scenario, store: target.name, notRun: error.message }
    log(`${target.name} ${scenario} failed: ${error instanceof Error ? error.stack : String(error)}`)
    return { scenario, store: target.name, notRun: `failed: ${messageOf(error)}` }
  } finally {
    await ns.dispose().catch(() => undefined)
  }
}

/**
 * `--retention`: the retention scenario alone (issue 18), too long for the default run. Both
 * layouts one after the other on the same server, each in a schema of its own.
 */
const mainRetention = async (argv: readonly string[]): Promise<void> => {
  const url = process.env.TXBOX_POSTGRES_URL
  if (!url) throw new Error('--retention needs TXBOX_POSTGRES_URL')
  const index = argv.indexOf('--retention-events')
  const events = index === -1 ? (argv.includes('--quick') ? 500_000 : 5_000_000) : Number(argv[index + 1])
  if (!Number.isSafeInteger(events) || events < 10_000)
    throw new Error('--retention-events must be an integer >= 10000')
  const machine = machineInfo()
  log(`txbox bench --retention: ${events} events; load ${machine.loadBefore}`)
  const enqueue = await runEnqueueCost(url, 7, log)
  for (const row of enqueue)
    log(
      `retention enqueue ${row.layout}: ${row.onePerCall.toFixed(0)}/s one per call, ${row.hundredPerCall.toFixed(0)}/s 100 per call`,
    )
  const rows: RetentionRow[] = []
  for (const layout of ['delete', 'partitions'] as const)
    rows.push(await runRetention(url, layout, { events, days: 10, retentionDays: 3 }, log))
  machine.loadAfter = loadAverage()
  const out = join(packageRoot, 'results')
  mkdirSync(out, { recursive: true })
  writeFileSync(join(out, 'retention.json'), `${JSON.stringify({ machine, enqueue, rows }, null, 2)}\n`)
  log(`results in ${join(out, 'retention.json')}`)
}

const main = async (): Promise<void> => {
  if (process.argv.includes('--retention')) return mainRetention(process.argv.slice(2))
  // The AWS SDK warns on every run that future versions need Node 22; it says nothing about this run.
  process.removeAllListeners('warning')
  process.on('warning', (warning) => {
    if (!`${warning.name} ${warning.message}`.includes('NodeVersionSupportWarning')) console.warn(warning)
  })
  const options = parseOptions(process.argv.slice(2))
  const started = Date.now()
  const machine = machineInfo()
  log(`txbox bench: stores ${options.stores.join(',')}; load ${machine.loadBefore}`)
  const results: Results = { machine, quick: options.quick, runs: options.runs, rows: [], relay: [] }
  const targets = new Map<StoreKind, Target>()
  const hungStores = new Map<StoreKind, string>()
  for (const store of options.stores) {
    const target = await connect(store)
    if (typeof target === 'string') {
      log(`${store}: not run: ${target}`)
      for (const scenario of options.scenarios) results.rows.push({ scenario, store, notRun: target })
      if (options.relay)
        for (const relays of [1, 4]) results.relay.push({ store, relays, events: 0, notRun: target })
      continue
    }
    targets.set(store, target)
    machine.servers[store] = target.serverVersion
    let hung: string | undefined
    for (const scenario of options.scenarios) {
      const row: ScenarioRow = hung
        ? { scenario, store, notRun: hung }
        : await runScenario(target, scenario, options)
      if (!hung && row.notRun?.includes('did not answer within')) {
        hung = `server stopped answering during an earlier scenario (${row.notRun})`
      }
      if (hung) hungStores.set(store, hung)
      results.rows.push(row)
      log(
        row.notRun
          ? `${store} ${scenario}: not run: ${row.notRun}`
          : `${store} ${scenario}: adapter ${row.adapter?.toFixed(0)}/s raw ${row.raw?.toFixed(0)}/s ratio ${row.ratio?.toFixed(2)} (${row.adapterPerCall?.toFixed(2)} vs ${row.rawPerCall?.toFixed(2)} ${row.unit}/call)`,
      )
    }
  }
  if (options.relay || options.e2e) {
    for (const target of targets.values()) {
      const hung = hungStores.get(target.name)
      const rows: RelayRow[] = hung
        ? [1, 4].map((relays) => ({ store: target.name, relays, events: 0, notRun: hung }))
        : options.relay
          ? await runRelay(target, options.quick, log)
          : []
      results.relay.push(...rows)
      // Two stores also run the lockstep relay of before issue 16 (the pipeline's before/after)
      // and bigger batches, to show the levers.
      if (options.relay && !hung && (target.name === 'postgres' || target.name === 'sqlite'))
        for (const config of [LOCKSTEP_RELAY, TUNED_RELAY])
          results.relay.push(...(await runRelay(target, options.quick, log, config)))
      // Ordering keys' cost at the relay (issue 18), on the stores the relay goals name.
      if (options.relay && !hung && hasRawRelay(target.name))
        results.relay.push(...(await runRelay(target, options.quick, log, KEYED_RELAY)))
      if (options.e2e && !hung && E2E_STORES.includes(target.name)) {
        const rawDrain = rows.find((row) => row.relays === 1)?.rawEventsPerSecond
        // What txbox's producers sustained in this run (8 clients; SQLite: its one writer).
        const enqueue = ['enqueue-tx-8', 'enqueue-tx']
          .map((scenario) =>
            results.rows.find((row) => row.store === target.name && row.scenario === scenario),
          )
          .find((row) => row?.adapter !== undefined)?.adapter
        results.latency = [
          ...(results.latency ?? []),
          ...(await runLatency(target, { rawDrain, enqueue }, options.quick, log)),
        ]
      }
    }
  }
  const postgres = targets.get('postgres')
  if (options.peers && postgres) {
    const hung = hungStores.get('postgres')
    results.peers = hung
      ? [{ workload: 'drain-1', events: 0, runs: 0, eventsPerSecond: {}, notRun: hung }]
      : await runPeers(postgres, options, log)
  }
  for (const target of targets.values()) {
    // A hung server's close() may never return either.
    if (!hungStores.has(target.name)) await target.close().catch(() => undefined)
  }
  if (options.memory) results.memory = await runMemory(options.quick, log)
  machine.loadAfter = loadAverage()
  results.durationSeconds = Math.round((Date.now() - started) / 1000)
  const out = join(packageRoot, 'results')
  mkdirSync(out, { recursive: true })
  writeFileSync(join(out, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`)
  log(`results in ${join(out, 'latest.json')} (${results.durationSeconds} s)`)
  if (options.docs) {
    writeDocs(results, repoRoot)
    log('wrote docs/BENCHMARKS.md and docs/benchmarks.svg')
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  },
)
