import { describe, expect, it } from 'vitest'
import { expectEqual, expectSame, mustBeSame } from '../src/assertions.js'
import { NO_KEY_RUNS_REASON } from '../src/cases/outbox-key-runs.js'
import { NO_ORDERING_KEYS_REASON } from '../src/cases/outbox-ordering.js'
import { NO_BREAK_REASON } from '../src/cases/rules-2.js'
import {
  CAPABILITY_AREAS,
  type ConformanceCase,
  type ConformanceFixture,
  type ConformanceTarget,
  caseArea,
  certifyCase,
  conformanceCases,
  createMemoryTarget,
  defineCase,
  formatReport,
  provisionServer,
  runConformance,
  type ServerEngine,
} from '../src/index.js'

const memory = createMemoryTarget()
const capabilities = memory.capabilities

const caseOf = (run: ConformanceCase['run']): ConformanceCase =>
  defineCase({ id: 'outbox.synthetic.case', title: 'a case written for this test', run })

/** Why a target error is not reported as a pass, a skip or "not run": each field of it is asserted. */
class DriverError extends Error {
  readonly code = 'ECONNRESET'
  constructor(message: string) {
    super(message)
    this.name = 'DriverError'
  }
}

describe('every check of a case runs and is reported', () => {
  it('reports both failed checks of a case, not only the first, and runs the rest of the case', async () => {
    let reachedTheEnd = false
    const result = await certifyCase({
      target: memory,
      capabilities,
      case: caseOf(async ({ store }) => {
        await store.outbox.findOrCreate({ eventId: 'a', subject: 'orders.a', payload: '{}' })
        expectSame(await store.oracle.outboxCount(), 2, 'first defect: the row count')
        expectEqual(await store.outbox.getCountByStatus(), { pending: 0 }, 'second defect: the counts')
        expectSame(await store.oracle.outboxCount(), 1, 'a check that holds')
        reachedTheEnd = true
      }),
    })
    expect(reachedTheEnd).toBe(true)
    expect(result.status).toBe('fail')
    expect(result.failures?.map((failure) => [failure.kind, failure.message.split('\n')[0]])).toEqual([
      ['check', 'first defect: the row count'],
      ['check', expect.stringMatching(/^second defect: the counts/)],
    ])
    // What was found is said, not only what was checked.
    expect(result.failures?.[0]?.message).toMatch(/^first defect: the row count\n1 !== 2$/)
    expect(result.error).toMatch(/first defect[\s\S]*second defect/)
    // The frame of a failed check is the case's own line, not the helper's.
    expect(result.failures?.[0]?.stack?.[0]).toMatch(/certificate\.test\.ts/)
  })

  it('ends the case at a failed must check or a thrown error, after the checks recorded before it', async () => {
    let afterMust = false
    const result = await certifyCase({
      target: memory,
      capabilities,
      case: caseOf(async () => {
        expectSame(1, 2, 'recorded first')
        mustBeSame('missing', 'present', 'the row the rest depends on')
        afterMust = true
      }),
    })
    expect(afterMust).toBe(false)
    expect(result.status).toBe('fail')
    expect(result.failures?.map((failure) => failure.kind)).toEqual(['check', 'error'])
    expect(result.failures?.[1]?.message).toMatch(/the row the rest depends on/)
  })

  it('reports two defects of one real case: counts that drop zeros and miscount publishing', async () => {
    const target: ConformanceTarget = {
      ...memory,
      name: 'two-count-defects',
      async create(options) {
        const fixture = await memory.create(options)
        const counts = fixture.outbox.getCountByStatus.bind(fixture.outbox)
        fixture.outbox.getCountByStatus = async () => {
          const { publishing, pending, ...rest } = await counts()
          const merged = { ...rest, pending: pending + publishing }
          return Object.fromEntries(Object.entries(merged).filter(([, count]) => count > 0)) as never
        }
        return fixture
      },
    }
    const report = await runConformance(target, { only: 'outbox.counts.all-statuses' })
    const [result] = report.cases
    expect(result?.status).toBe('fail')
    expect(result?.failures?.map((failure) => failure.message.split('\n')[0])).toEqual([
      expect.stringMatching(/^an empty outbox/),
      expect.stringMatching(/^one of each, two pending/),
    ])
    expect(report.verdict.text).toBe(
      'NOT CERTIFIED (failed: outbox); FAILED: outbox (outbox.counts.all-statuses failed)',
    )
    const table = formatReport(report)
    expect(table).toMatch(/check failed: an empty outbox/)
    expect(table).toMatch(/check failed: one of each, two pending/)
  })

  it('throws outside a running case, as node:assert does', () => {
    expect(() => expectSame(1, 2, 'outside')).toThrow(/outside/)
    expect(() => expectEqual({ a: 1 }, { a: 2 }, 'outside too')).toThrow(/outside too/)
  })
})

describe('failures a third party can act on', () => {
  it("shows a thrown error's name, message, code, cause and top stack frames in the table and the JSON", async () => {
    const target: ConformanceTarget = {
      ...memory,
      name: 'driver-fails',
      async create(options) {
        const fixture = await memory.create(options)
        fixture.outbox.findOrCreate = async () => {
          throw Object.assign(
            new Error('[txbox] [acme] insert failed', { cause: new DriverError('socket hang up') }),
            {
              name: 'StorageError',
              code: 'STORAGE',
            },
          )
        }
        return fixture
      },
    }
    const report = await runConformance(target, { only: 'outbox.idempotency.first-write-wins' })
    const failure = report.cases[0]?.failures?.at(-1)
    expect(failure).toMatchObject({
      kind: 'error',
      name: 'StorageError',
      message: '[txbox] [acme] insert failed',
      code: 'STORAGE',
      cause: 'DriverError [ECONNRESET]: socket hang up',
    })
    expect(failure?.stack?.[0]).toMatch(/certificate\.test\.ts/)
    // The suite's own runner frames are the same for every failure: they are left out.
    expect(failure?.stack?.join('\n')).not.toMatch(/src[\\/]runner\.ts/)
    const table = formatReport(report)
    expect(table).toContain('StorageError [STORAGE]: [txbox] [acme] insert failed')
    expect(table).toContain('cause: DriverError [ECONNRESET]: socket hang up')
    expect(table).toMatch(/at .*certificate\.test\.ts/)
  })

  it('reports a setup() that throws as a target error on every case, with its cause, never as not run', async () => {
    let tornDown = false
    const target: ConformanceTarget = {
      ...memory,
      name: 'setup-throws',
      async setup() {
        throw new Error('password authentication failed', { cause: new DriverError('28P01') })
      },
      async teardown() {
        tornDown = true
      },
    }
    const report = await runConformance(target)
    expect(report.ok).toBe(false)
    expect(report.targetError).toMatchObject({
      stage: 'setup',
      failure: {
        name: 'Error',
        message: 'password authentication failed',
        cause: 'DriverError [ECONNRESET]: 28P01',
      },
    })
    expect(report.summary).toMatchObject({ errors: conformanceCases.length, notRun: 0, passed: 0 })
    expect(
      report.cases.every(
        (result) => result.status === 'error' && /setup\(\) failed/.test(result.reason ?? ''),
      ),
    ).toBe(true)
    expect(report.verdict.text).toMatch(/^NOT CERTIFIED \(target error: setup\(\) failed: Error: password/)
    expect(formatReport(report)).not.toMatch(/not reached|NOT RUN/)
    expect(tornDown).toBe(true)
  })

  it('disposes what create() registered before it threw, and reports the case as a target error', async () => {
    const opened: string[] = []
    const disposed: string[] = []
    const target: ConformanceTarget = {
      ...memory,
      name: 'create-throws-midway',
      async create({ onDispose }) {
        opened.push('schema_1')
        onDispose?.(() => disposed.push('schema_1'))
        throw new Error('migration failed at step 2')
      },
    }
    const [c] = conformanceCases
    const result = await certifyCase({ target, case: c as ConformanceCase, capabilities })
    expect(result.status).toBe('error')
    expect(result.reason).toBe('target error: create() failed: migration failed at step 2')
    expect(result.failures?.[0]).toMatchObject({
      name: 'TargetError',
      cause: 'Error: migration failed at step 2',
    })
    expect(disposed).toEqual(opened)
  })

  it('disposes the fixtures already created when a later create() of the case throws', async () => {
    const disposed: number[] = []
    let created = 0
    const target: ConformanceTarget = {
      ...memory,
      name: 'second-create-throws',
      async create(options) {
        created += 1
        const index = created
        if (index === 2) throw new Error('out of connections')
        const fixture: ConformanceFixture = await memory.create(options)
        return { ...fixture, dispose: async () => void disposed.push(index) }
      },
    }
    const result = await certifyCase({
      target,
      capabilities,
      case: caseOf(async ({ createStore }) => {
        await createStore()
      }),
    })
    expect(result.status).toBe('error')
    expect(result.reason).toMatch(/create\(\) failed: out of connections/)
    expect(disposed).toEqual([1])
  })

  it('fails a case that outlives the configured timeout, naming the option', async () => {
    const result = await certifyCase({
      target: memory,
      capabilities,
      timeoutMs: 50,
      case: caseOf(() => new Promise(() => {})),
    })
    expect(result.status).toBe('fail')
    expect(result.error).toMatch(/did not finish within 50 ms \(raise it with --case-timeout-ms/)
    await expect(runConformance(memory, { caseTimeoutMs: 0 })).rejects.toThrow(
      /caseTimeoutMs must be a positive integer/,
    )
  })

  it('asks for --url when the target names an engine the suite cannot start', async () => {
    const found = await provisionServer('cassandra' as ServerEngine, {
      urlOption: '--url',
      env: { HOME: '/nonexistent-home' },
    })
    expect('notRun' in found && found.notRun).toMatch(/pass --url <url> or set TXBOX_CASSANDRA_URL/)
    expect('notRun' in found && found.notRun).not.toMatch(/undefined|scripts\//)
  })
})

describe('declared capabilities are validated', () => {
  const declarations: [string, unknown, RegExp][] = [
    ['absent', undefined, /capabilities must be an object/],
    ['empty', {}, /capabilities\.transactions must be one of .*got nothing.*capabilities\.claim/],
    [
      'an unknown transactions value',
      { ...capabilities, transactions: 'sometimes' },
      /transactions .*got "sometimes"/,
    ],
    ['an unknown claim value', { ...capabilities, claim: 'optimistic' }, /claim .*got "optimistic"/],
    [
      'a zero maxEventBytes',
      { ...capabilities, maxEventBytes: 0 },
      /maxEventBytes must be a positive integer.*got 0/,
    ],
    ['a fractional maxEventBytes', { ...capabilities, maxEventBytes: 1.5 }, /maxEventBytes .*got 1\.5/],
    ['a maxEventBytes string', { ...capabilities, maxEventBytes: '1MB' }, /maxEventBytes .*got "1MB"/],
    [
      'an orderingKeys string',
      { ...capabilities, orderingKeys: 'yes' },
      /orderingKeys must be true, false or absent, got "yes"/,
    ],
    ['an orderingKeys of 1', { ...capabilities, orderingKeys: 1 }, /orderingKeys .*got 1/],
  ]
  for (const [label, declared, message] of declarations) {
    it(`reports ${label} as a target error, never a certificate`, async () => {
      const report = await runConformance({ ...memory, name: 'malformed', capabilities: declared as never })
      expect(report.targetError?.stage).toBe('capabilities')
      expect(report.targetError?.message).toMatch(message)
      expect(report.ok).toBe(false)
      expect(report.summary.passed).toBe(0)
      expect(report.cases.every((result) => result.status === 'error')).toBe(true)
      expect(report.verdict.text).toMatch(/^NOT CERTIFIED \(target error: capabilities/)
      expect(report.verdict.text).not.toMatch(/CERTIFIED for/)
    })
  }

  it('checks the capabilities detected by setup(), which replace the static ones', async () => {
    const report = await runConformance({
      ...memory,
      async setup() {
        return { capabilities: { ...capabilities, claim: 'row-lock' as never } }
      },
    })
    expect(report.targetError?.message).toMatch(/claim .*got "row-lock"/)
  })
})

describe('capability-scoped verdicts', () => {
  it('maps every case to one capability area of the table', () => {
    const areas = CAPABILITY_AREAS.map(({ area }) => area)
    for (const c of conformanceCases) expect(areas).toContain(caseArea(c.id))
    expect(caseArea('outbox.claim.fencing')).toBe('claim')
    expect(caseArea('inbox.tx.commit-visible')).toBe('transactions')
    expect(caseArea('outbox.payload.too-large')).toBe('payload-limit')
    expect(caseArea('outbox.payload.fidelity')).toBe('outbox')
    expect(caseArea('isolation.prefix')).toBe('schema')
    expect(caseArea('inbox.errors.driver-failure')).toBe('driver-errors')
  })

  it('certifies our memory store for every area but driver-errors (it has no driver), scoped to what it declares', async () => {
    const report = await runConformance(memory)
    expect(report.ok).toBe(true)
    expect(report.verdict.areas.map(({ area, status }) => [area, status])).toEqual(
      CAPABILITY_AREAS.map(({ area }) => [area, area === 'driver-errors' ? 'not-certified' : 'certified']),
    )
    expect(report.verdict.text).toBe(
      `CERTIFIED for: outbox, inbox, claim (${capabilities.claim === 'single-writer' ? 'single-writer: the database serializes every writer, so claims are disjoint only within that' : capabilities.claim}), transactions (${capabilities.transactions}), payload-limit (${capabilities.maxEventBytes} bytes), ordering, key-runs, schema; NOT certified: driver-errors (skipped: ${NO_BREAK_REASON})`,
    )
  })

  it('says what a store without transactions is not certified for, and why', async () => {
    const report = await runConformance({
      ...memory,
      capabilities: { ...capabilities, transactions: 'none', transactionsNote: 'a standalone server' },
    })
    expect(report.ok).toBe(true)
    expect(report.verdict.text).toMatch(
      /^CERTIFIED for: outbox, inbox, claim \([^)]*\), payload-limit \(\d+ bytes\), key-runs, schema; /,
    )
    expect(report.verdict.text).toMatch(
      /NOT certified: transactions \(skipped: the store reports transactions: 'none' \(a standalone server\)\); NOT certified: ordering \(skipped: the store reports transactions: 'none' \(a standalone server\)\); NOT certified: driver-errors \(skipped: .+\)$/,
    )
    expect(formatReport(report).split('\n').at(-1)).toBe(report.verdict.text)
  })

  it('skips every key-runs case, with the reason, for a target that does not declare keyRuns; the other areas stay certified', async () => {
    for (const declared of [false, undefined]) {
      const { keyRuns: _, ...rest } = capabilities
      const report = await runConformance({
        ...memory,
        capabilities: declared === undefined ? rest : { ...rest, keyRuns: declared },
      })
      expect(report.ok).toBe(true)
      const runs = report.cases.filter((result) => result.id.startsWith('outbox.key-runs.'))
      expect(runs.length).toBe(6)
      for (const result of runs) {
        expect(result.status).toBe('skip')
        expect(result.reason).toBe(NO_KEY_RUNS_REASON)
      }
      expect(report.verdict.text).toMatch(
        /ordering, schema; NOT certified: key-runs \(skipped: the target does not declare keyRuns\)/,
      )
    }
    expect(caseArea('outbox.key-runs.release')).toBe('key-runs')
    const report = await runConformance({ ...memory, capabilities: { ...capabilities, orderingKeys: false } })
    expect(report.targetError?.message).toMatch(/keyRuns is true but orderingKeys is not/)
  })

  it('skips every ordering case, with the reason, for a target that does not declare orderingKeys', async () => {
    for (const declared of [false, undefined]) {
      // Key runs are runs of ordering keys: a target without orderingKeys declares neither.
      const { orderingKeys: _, keyRuns: _runs, ...rest } = capabilities
      const report = await runConformance({
        ...memory,
        capabilities: declared === undefined ? rest : { ...rest, orderingKeys: declared },
      })
      expect(report.ok).toBe(true)
      const ordering = report.cases.filter((result) => result.id.startsWith('outbox.ordering.'))
      expect(ordering.map((result) => result.id)).toEqual(
        conformanceCases.filter((c) => c.id.startsWith('outbox.ordering.')).map((c) => c.id),
      )
      expect(ordering.length).toBe(9)
      for (const result of ordering) {
        expect(result.status).toBe('skip')
        expect(result.reason).toBe(NO_ORDERING_KEYS_REASON)
      }
      expect(report.verdict.areas.find((area) => area.area === 'ordering')).toMatchObject({
        status: 'not-certified',
        reasons: [`skipped: ${NO_ORDERING_KEYS_REASON}`],
      })
      expect(report.verdict.text).toMatch(
        /NOT certified: ordering \(skipped: the target does not declare orderingKeys\)/,
      )
    }
    expect(caseArea('outbox.ordering.key-seq')).toBe('ordering')
    expect(caseArea('outbox.order.fifo')).toBe('outbox')
  })

  it('fails the run when a required area is not certified', async () => {
    const report = await runConformance(
      { ...memory, capabilities: { ...capabilities, transactions: 'none' } },
      { require: ['transactions'] },
    )
    expect(report.ok).toBe(false)
    expect(report.verdict.missingRequired).toEqual(['transactions'])
    expect(report.verdict.text).toMatch(
      /^NOT CERTIFIED \(required but not certified: transactions\); certified for: outbox, .*; NOT certified: transactions \(skipped: /,
    )
    await expect(runConformance(memory, { require: ['transactionz'] })).rejects.toThrow(
      /unknown capability area "transactionz": use outbox, inbox, claim, transactions, payload-limit, ordering, key-runs, schema, driver-errors$/,
    )
  })

  it('says when the size limit is the default because the target declares none', async () => {
    const { maxEventBytes: _, ...undeclared } = capabilities
    const report = await runConformance(
      { ...memory, capabilities: undeclared },
      { only: 'outbox.payload.too-large' },
    )
    expect(report.verdict.text).toMatch(
      /payload-limit \(1048576 bytes, the contract's default: the target declares no maxEventBytes\)/,
    )
  })
})
