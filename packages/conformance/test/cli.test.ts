import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it, vi } from 'vitest'
import { runCli } from '../src/cli.js'
import { conformanceCases } from '../src/index.js'

/** A directory outside the repository, where a third party's target module lives. */
const outside = mkdtempSync(join(tmpdir(), 'txbox-third-party-'))
afterAll(() => rmSync(outside, { recursive: true, force: true }))

const capture = () => {
  const out: string[] = []
  const err: string[] = []
  return { io: { out: (line: string) => out.push(line), err: (line: string) => err.push(line) }, out, err }
}

const writeModule = (name: string, body: string): string => {
  const file = join(outside, name)
  writeFileSync(file, body)
  return file
}

// A third party's adapter: it builds on the reference store, under its own name and version.
const goodModule = writeModule(
  'acme-target.mjs',
  `import { createMemoryTarget } from '@txbox/conformance'
export const createConformanceTarget = () => ({ ...createMemoryTarget(), name: 'acme-outbox', version: '1.2.3' })
`,
)

// The same adapter with a defect: its counts leave out statuses with no events.
const brokenModule = writeModule(
  'acme-broken-target.mjs',
  `import { createMemoryTarget } from '@txbox/conformance'
const base = createMemoryTarget()
export const createConformanceTarget = () => ({
  ...base,
  name: 'acme-broken',
  async create(options) {
    const fixture = await base.create(options)
    const getCountByStatus = fixture.outbox.getCountByStatus.bind(fixture.outbox)
    fixture.outbox.getCountByStatus = async () =>
      Object.fromEntries(Object.entries(await getCountByStatus()).filter(([, count]) => count > 0))
    return fixture
  },
})
`,
)

// An adapter that needs a server nobody provided.
const serverModule = writeModule(
  'acme-server-target.mjs',
  `import { createMemoryTarget } from '@txbox/conformance'
export const createConformanceTarget = () => ({ ...createMemoryTarget(), name: 'acme-server', engine: 'nats' })
`,
)

// An adapter whose deployment has no transactions (e.g. MongoDB without a replica set).
const noTxModule = writeModule(
  'acme-no-tx-target.mjs',
  `import { createMemoryTarget } from '@txbox/conformance'
const base = createMemoryTarget()
export const createConformanceTarget = () => ({
  ...base,
  name: 'acme-no-tx',
  capabilities: { ...base.capabilities, transactions: 'none', transactionsNote: 'standalone server' },
})
`,
)

// An adapter whose setup() cannot log in.
const setupThrowsModule = writeModule(
  'acme-setup-throws-target.mjs',
  `import { createMemoryTarget } from '@txbox/conformance'
export const createConformanceTarget = () => ({
  ...createMemoryTarget(),
  name: 'acme-setup-throws',
  async setup() {
    throw new Error('password authentication failed for user "acme"', {
      cause: Object.assign(new Error('auth refused'), { code: '28P01' }),
    })
  },
})
`,
)

// An adapter that declares capabilities the suite cannot read.
const malformedModule = writeModule(
  'acme-malformed-target.mjs',
  `import { createMemoryTarget } from '@txbox/conformance'
export const createConformanceTarget = () => ({
  ...createMemoryTarget(),
  name: 'acme-malformed',
  capabilities: { transactions: 'yes', claim: 'skip-locked', maxEventBytes: -1 },
})
`,
)

describe('txbox-conformance', () => {
  it('lists every case id', async () => {
    const { io, out } = capture()
    expect(await runCli(['list'], io)).toBe(0)
    expect(out.map((line) => line.split(' ')[0])).toEqual(conformanceCases.map((c) => c.id))
  })

  it('certifies a target module defined outside the repository and writes the JSON report', async () => {
    const { io, out } = capture()
    const reportFile = join(outside, 'report.json')
    expect(await runCli(['run', '--target', goodModule, '--report', reportFile], io)).toBe(0)
    const report = JSON.parse(readFileSync(reportFile, 'utf8'))
    expect(report.adapter).toEqual({ name: 'acme-outbox', version: '1.2.3' })
    expect(report.ok).toBe(true)
    expect(report.summary.failed).toBe(0)
    expect(report.summary.passed).toBe(conformanceCases.length - report.summary.skipped)
    expect(
      report.cases
        .filter((c: { status: string }) => c.status === 'skip')
        .every((c: { reason?: string }) => c.reason),
    ).toBe(true)
    expect(out.join('\n')).toContain('CERTIFIED')
  })

  it('exits 1 and names the failing cases when the adapter is broken', async () => {
    const { io, out } = capture()
    expect(await runCli(['run', '--target', brokenModule, '--json'], io)).toBe(1)
    const report = JSON.parse(out.join('\n'))
    const failed = report.cases
      .filter((c: { status: string }) => c.status === 'fail')
      .map((c: { id: string }) => c.id)
    // Every case that reads a zero count catches it.
    expect(failed).toEqual([
      'outbox.claim.sent-batch-stays-sent',
      'outbox.cleanup.batches',
      'outbox.counts.all-statuses',
      'outbox.tx.rollback-invisible',
      'outbox.validation.unknown-ids-create-nothing',
      'outbox.ordering.validation',
      'outbox.paging.many-pages',
      'isolation.prefix',
    ])
  })

  it('runs only the selected cases', async () => {
    const { io, out } = capture()
    expect(await runCli(['run', '--target', goodModule, '--only', 'inbox.dedupe.*', '--json'], io)).toBe(0)
    const selected = JSON.parse(out.join('\n')).cases.map((c: { id: string }) => c.id)
    expect(selected).toEqual(conformanceCases.map((c) => c.id).filter((id) => id.startsWith('inbox.dedupe.')))
    expect(selected).toContain('inbox.dedupe.stream-seq')
  })

  it('reports every case as not run, with the reason, when the server cannot be found', async () => {
    // No URL, and no container either, whatever engine this machine has.
    vi.stubEnv('TXBOX_NATS_URL', '')
    vi.stubEnv('TXBOX_TESTCONTAINERS', '0')
    try {
      const { io, out } = capture()
      expect(await runCli(['run', '--target', serverModule, '--json'], io)).toBe(3)
      const report = JSON.parse(out.join('\n'))
      expect(report.summary.notRun).toBe(conformanceCases.length)
      expect(report.cases[0].reason).toMatch(/TXBOX_NATS_URL/)
      expect(report.ok).toBe(false)
    } finally {
      vi.unstubAllEnvs()
    }
  })

  it('says once, not once per case, how to provide the missing server, and never names a dev script', async () => {
    vi.stubEnv('TXBOX_NATS_URL', '')
    vi.stubEnv('TXBOX_TESTCONTAINERS', '0')
    try {
      const { io, out, err } = capture()
      expect(await runCli(['run', '--target', serverModule], io)).toBe(3)
      const all = [...out, ...err].join('\n')
      const mentions = all.split('no nats server').length - 1
      // Once on stderr for the target, once in the table: not once per case.
      expect(mentions).toBe(2)
      expect(all).toContain(`NOT RUN  all ${conformanceCases.length} cases: no nats server`)
      expect(err.join('\n')).toMatch(
        /acme-server not run: no nats server: pass --url <url> or set TXBOX_NATS_URL \(e\.g\. nats:\/\/127\.0\.0\.1:4222\); starting one in Docker is turned off \(TXBOX_TESTCONTAINERS=0\)/,
      )
      expect(all).not.toMatch(/scripts\//)
      expect(all).toContain('NOT CERTIFIED (target not reached)')
    } finally {
      vi.unstubAllEnvs()
    }
  })

  it('prints the capability-scoped verdict as the last line', async () => {
    const { io, out } = capture()
    expect(await runCli(['run', '--target', noTxModule], io)).toBe(0)
    expect(out.join('\n').split('\n').at(-1)).toMatch(
      /^CERTIFIED for: outbox, inbox, claim \([^)]+\), payload-limit \(\d+ bytes\), key-runs, schema; NOT certified: transactions \(skipped: the store reports transactions: 'none' \(standalone server\)\); NOT certified: ordering \(skipped: the store reports transactions: 'none' \(standalone server\)\); NOT certified: driver-errors \(skipped: .+\)$/,
    )
  })

  it("exits 5 when a --require'd capability is not certified, and 0 when it is", async () => {
    const missing = capture()
    expect(
      await runCli(['run', '--target', noTxModule, '--require', 'transactions,outbox', '--json'], missing.io),
    ).toBe(5)
    const report = JSON.parse(missing.out.join('\n'))
    expect(report.required).toEqual(['transactions', 'outbox'])
    expect(report.verdict.missingRequired).toEqual(['transactions'])
    expect(report.ok).toBe(false)
    const present = capture()
    expect(
      await runCli(['run', '--target', goodModule, '--require', 'transactions', '--only', 'tx'], present.io),
    ).toBe(0)
    expect(present.out.join('\n')).toMatch(/required: transactions/)
  })

  it('exits 4 and shows the cause when setup() throws: a target error, not "not reached"', async () => {
    const { io, out } = capture()
    expect(await runCli(['run', '--target', setupThrowsModule], io)).toBe(4)
    const table = out.join('\n')
    expect(table).toContain(
      'TARGET ERROR (setup): setup() failed: Error: password authentication failed for user "acme"',
    )
    expect(table).toContain('cause: Error [28P01]: auth refused')
    expect(table).toMatch(/at .*acme-setup-throws-target\.mjs/)
    expect(table).toContain(`ERROR  all ${conformanceCases.length} cases: target error: setup() failed`)
    expect(table).not.toMatch(/not reached|NOT RUN/)
    expect(table.split('\n').at(-1)).toMatch(/^NOT CERTIFIED \(target error: setup\(\) failed/)
  })

  it('exits 4 when the declared capabilities are malformed, naming each field', async () => {
    const { io, out } = capture()
    expect(await runCli(['run', '--target', malformedModule, '--json'], io)).toBe(4)
    const report = JSON.parse(out.join('\n'))
    expect(report.targetError.stage).toBe('capabilities')
    expect(report.targetError.message).toMatch(/capabilities\.transactions must be one of .*got "yes"/)
    expect(report.targetError.message).toMatch(
      /capabilities\.maxEventBytes must be a positive integer .*got -1/,
    )
    expect(report.summary.errors).toBe(conformanceCases.length)
    expect(report.verdict.certified).toBe(false)
  })

  it('rejects a malformed --case-timeout-ms or an unknown --require area with a usage error', async () => {
    const { io, err } = capture()
    expect(await runCli(['run', '--target', goodModule, '--case-timeout-ms', '2s'], io)).toBe(2)
    expect(await runCli(['run', '--target', goodModule, '--case-timeout-ms', '0'], io)).toBe(2)
    expect(await runCli(['run', '--target', goodModule, '--require', 'transaction'], io)).toBe(2)
    expect(err.join('\n')).toMatch(
      /--case-timeout-ms must be a positive integer number of milliseconds, got "2s"/,
    )
    expect(err.join('\n')).toMatch(
      /unknown capability area "transaction": use outbox, inbox, claim, transactions/,
    )
  })

  it('fails a case that outlives --case-timeout-ms', async () => {
    const hangs = writeModule(
      'acme-hangs-target.mjs',
      `import { createMemoryTarget } from '@txbox/conformance'
const base = createMemoryTarget()
export const createConformanceTarget = () => ({
  ...base,
  name: 'acme-hangs',
  async create(options) {
    const fixture = await base.create(options)
    fixture.outbox.getCountByStatus = () => new Promise(() => {})
    return fixture
  },
})
`,
    )
    const { io, out } = capture()
    expect(
      await runCli(
        ['run', '--target', hangs, '--only', 'outbox.counts.all-statuses', '--case-timeout-ms', '200'],
        io,
      ),
    ).toBe(1)
    expect(out.join('\n')).toMatch(/outbox\.counts\.all-statuses did not finish within 200 ms/)
  })

  it('prints its version from package.json', async () => {
    const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
    for (const flag of ['--version', 'version']) {
      const { io, out } = capture()
      expect(await runCli([flag], io)).toBe(0)
      expect(out).toEqual([version])
    }
  })

  it('rejects unknown targets and missing modules with a usage error', async () => {
    const { io, err } = capture()
    expect(await runCli(['run', '--target', 'cassandra'], io)).toBe(2)
    expect(await runCli(['run', '--target', join(outside, 'missing.mjs')], io)).toBe(2)
    expect(await runCli(['run'], io)).toBe(2)
    expect(err.join('\n')).toMatch(/unknown target "cassandra"/)
  })
})
