import type { MemoryTransaction } from '@txbox/core'
import { describe, expect, it } from 'vitest'
import { NO_PEER_REASON } from '../src/cases/concurrency.js'
import { type ConformanceTarget, runConformance } from '../src/index.js'
import { createMemoryTarget } from '../src/memory-target.js'

const ACROSS: readonly [string, string] = [
  'outbox.claim.disjoint-across-connections',
  'inbox.claim.exactly-one-across-connections',
]

/** The memory target with `peer` changed by `change` (removed when it returns undefined). */
const memoryTargetWith = (
  name: string,
  change: (
    fixture: Awaited<ReturnType<ConformanceTarget<MemoryTransaction>['create']>>,
  ) => Partial<Awaited<ReturnType<ConformanceTarget<MemoryTransaction>['create']>>>,
): ConformanceTarget<MemoryTransaction> => {
  const base = createMemoryTarget()
  return {
    ...base,
    name,
    async create(options) {
      const { peer: _peer, ...fixture } = await base.create(options)
      return { ...fixture, ...change(fixture) }
    },
  }
}

describe('claims raced across connections (peer())', () => {
  it('a target without peer() gets both cases skipped with the reason, and claim is not certified', async () => {
    const target = memoryTargetWith('no-peer', () => ({}))
    const report = await runConformance(target, { only: '*.claim.*' })
    const across = report.cases.filter((result) => ACROSS.includes(result.id))
    expect(across.map((result) => [result.id, result.status, result.reason])).toEqual(
      ACROSS.map((id) => [id, 'skip', NO_PEER_REASON]),
    )
    // Every other claim case passed: only the missing peer keeps claim uncertified.
    expect(report.summary.passed).toBe(report.summary.total - ACROSS.length)
    const claim = report.verdict.areas.find((area) => area.area === 'claim')
    expect(claim?.status).toBe('not-certified')
    expect(claim?.reasons).toEqual([`skipped: ${NO_PEER_REASON}`])
    expect(report.verdict.text).toContain(`NOT certified: claim (skipped: ${NO_PEER_REASON})`)
    const required = await runConformance(target, { only: '*.claim.*', require: ['claim'] })
    expect(required.ok).toBe(false)
    expect(required.verdict.missingRequired).toEqual(['claim'])
  })

  it('every peer a case opened is disposed before its fixture', async () => {
    const events: string[] = []
    let opened = 0
    const target = memoryTargetWith('counted-peers', (fixture) => ({
      async peer() {
        const number = ++opened
        events.push(`open ${number}`)
        return {
          outbox: fixture.outbox,
          inbox: fixture.inbox,
          dispose: async () => {
            events.push(`close ${number}`)
          },
        }
      },
      async dispose() {
        events.push('dispose fixture')
      },
    }))
    const report = await runConformance(target, { only: ACROSS[0] })
    expect(report.cases.map((result) => result.status)).toEqual(['pass'])
    expect(opened).toBeGreaterThan(0)
    const fixtureAt = events.indexOf('dispose fixture')
    for (let number = 1; number <= opened; number++) {
      expect(events).toContain(`close ${number}`)
      expect(events.indexOf(`close ${number}`)).toBeLessThan(fixtureAt)
    }
  })

  it('a peer() that throws is a target error naming peer(), not a skip or a failure', async () => {
    const target = memoryTargetWith('broken-peer', () => ({
      async peer() {
        throw new Error('connection refused')
      },
    }))
    const report = await runConformance(target, { only: ACROSS[1] })
    const [result] = report.cases
    expect(result?.status).toBe('error')
    expect(result?.reason).toBe('target error: peer() failed: connection refused')
  })
})
