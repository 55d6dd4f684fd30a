import type { StoreKind } from '@txbox/core'
import type { ScenarioName } from './scenarios.js'

export interface ScenarioRow {
  scenario: ScenarioName
  store: StoreKind
  /** Median events/s, or undefined when not run. */
  adapter?: number
  raw?: number
  ratio?: number
  /** Round trips (statements, commands, requests) per call, adapter and raw. */
  adapterPerCall?: number
  rawPerCall?: number
  unit?: string
  events?: number
  runs?: number
  notRun?: string
}

export interface RelayRow {
  store: StoreKind
  relays: number
  events: number
  /** txbox: median events/s from start to the last event published and marked sent. */
  eventsPerSecond?: number
  samples?: number[]
  /** The raw relay in the same runs (alternating with txbox), where the store has one. */
  rawEventsPerSecond?: number
  rawSamples?: number[]
  /** txbox / raw. */
  ratio?: number
  /** CPU time of the relay processes per event (median of the runs): steadier than events/s on a loaded machine. */
  cpuUsPerEvent?: number
  rawCpuUsPerEvent?: number
  config?: string
  /** Ordering keys the events were spread over (undefined: unkeyed). */
  keys?: number
  notRun?: string
}

/** Commit -> JetStream latency at a fixed offered load, one relay process (issue 16 goal 4). */
export interface LatencyRow {
  store: StoreKind
  relay: 'txbox' | 'raw'
  /** Events/s the producers were asked for, and what they committed. */
  offeredPerSecond: number
  committedPerSecond?: number
  /** Events stored in JetStream per second, from the first commit to the last message stored. */
  deliveredPerSecond?: number
  events?: number
  runs?: number
  /** Commit -> JetStream message timestamp, over every event of the runs. */
  p50Ms?: number
  p99Ms?: number
  maxMs?: number
  notRun?: string
}

/**
 * One workload of "txbox vs raw vs peers" on PostgreSQL (issue 16): median events/s per side
 * ('txbox', 'raw', a peer's name, or a peer's name and settings), measured in the same rounds.
 */
export interface PeerRow {
  workload: 'enqueue-tx' | 'enqueue-tx-8' | 'enqueue-tx-100' | 'drain-1'
  events: number
  runs: number
  eventsPerSecond: Record<string, number>
  samples?: Record<string, number[]>
  notRun?: string
}

export interface MemoryResult {
  store: StoreKind
  relay: 'txbox' | 'raw'
  events: number
  peakRssMb?: number
  /** RSS (MB) when 0/25/50/75/100% of the events were published. */
  rssAt?: Array<{ percent: number; rssMb: number }>
  baselineRssMb?: number
  seconds?: number
  notRun?: string
}

export interface Machine {
  date: string
  cpus: number
  cpuModel: string
  memory: string
  os: string
  node: string
  loadBefore: string
  loadAfter?: string
  servers: Record<string, string>
}

export interface Results {
  machine: Machine
  quick: boolean
  runs: number
  rows: ScenarioRow[]
  relay: RelayRow[]
  peers?: PeerRow[]
  latency?: LatencyRow[]
  memory?: MemoryResult[]
  durationSeconds?: number
}
