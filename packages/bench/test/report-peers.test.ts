import { describe, expect, it } from 'vitest'
import { barChart } from '../src/chart.js'
import { peerDrainSide } from '../src/peers/peer-drain.js'
import { PEER, PEER_DEFAULTS, PEER_TUNED } from '../src/peers/pg-transactional-outbox.js'
import { renderPeerSection, renderPeersSvg } from '../src/peers/report-peers.js'
import type { Results } from '../src/results.js'

const results = (): Results => ({
  machine: {
    date: '2026-12-01T05:00:00Z',
    cpus: 2,
    cpuModel: 'test',
    memory: '1 GB',
    os: 'test',
    node: 'v20',
    loadBefore: '1, 1, 1',
    servers: {},
  },
  quick: false,
  runs: 5,
  rows: [],
  relay: [
    {
      store: 'postgres',
      relays: 4,
      events: 20_000,
      eventsPerSecond: 9_999,
      rawEventsPerSecond: 1,
      config: 'defaults',
    },
    {
      store: 'postgres',
      relays: 1,
      events: 20_000,
      eventsPerSecond: 4_000,
      config: 'batchSize 500, concurrency 256, maxBatchBytes 536870912',
    },
    {
      store: 'postgres',
      relays: 1,
      events: 20_000,
      eventsPerSecond: 2_000,
      rawEventsPerSecond: 3_000,
      config: 'defaults',
    },
  ],
  peers: [
    { workload: 'enqueue-tx', events: 500, runs: 5, eventsPerSecond: { txbox: 400, raw: 800, [PEER]: 600 } },
    { workload: 'enqueue-tx-8', events: 2000, runs: 5, eventsPerSecond: {}, notRun: 'failed: a | b' },
    {
      workload: 'drain-1',
      events: 3000,
      runs: 3,
      eventsPerSecond: { [peerDrainSide(PEER_DEFAULTS)]: 100, [peerDrainSide(PEER_TUNED)]: 500 },
    },
  ],
})

describe('the txbox vs raw vs peers table', () => {
  const table = renderPeerSection(results()).join('\n')

  it('gives each side its events/s and its ratio to txbox', () => {
    expect(table).toContain('| enqueue 1 event per tx, 1 client | 400 | 800 | 600 | 2.00 | 1.50 |')
  })

  it("takes the drain's txbox and raw from the 1-process relay row at defaults, the peer's from its runs", () => {
    expect(table).toContain(
      '| drain → JetStream, 1 relay, defaults | 2,000 | 3,000 | 100 (tuned 500) | 1.50 | 0.05 (tuned 0.25) |',
    )
  })

  it('says why a workload was not run, without breaking the table', () => {
    expect(table).toContain('| enqueue 1 event per tx, 8 clients | not run: failed: a / b | | | | |')
  })

  it('is empty when the run had no peers', () => {
    expect(renderPeerSection({ ...results(), peers: undefined } as unknown as Results)).toEqual([])
  })
})

describe('the peers chart', () => {
  it('draws every side relative to txbox, with txbox at 1', () => {
    const svg = renderPeersSvg(results())
    expect(svg).toContain('>2.00</text>')
    expect(svg).toContain('>1.50</text>')
    expect(svg).toContain('>0.25</text>')
    expect(svg.match(/>1\.00<\/text>/g)).toHaveLength(2)
  })
})

describe('barChart', () => {
  it('draws a dashed mark only for groups that have one, and skips empty groups', () => {
    const svg = barChart('h & t', [
      { title: 'a', mark: 0.8, bars: [{ label: 'x', value: 0.5, color: '#000' }] },
      { title: 'b', bars: [{ label: 'y', value: 1, color: '#000' }] },
      { title: 'empty', mark: 1, bars: [] },
    ])
    expect(svg.match(/stroke-dasharray/g)).toHaveLength(1)
    expect(svg).not.toContain('>empty<')
    expect(svg).toContain('h &amp; t')
  })
})
