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
  /** Median events/s from start to the last acknowledged publish. */
  eventsPerSecond?: number
  samples?: number[]
  config?: string
  notRun?: string
}

export interface MemoryResult {
  store: StoreKind
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
  memory?: MemoryResult
  durationSeconds?: number
}
