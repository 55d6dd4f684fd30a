import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { conformanceCases } from '../src/index.js'

const reportDir = mkdtempSync(join(tmpdir(), 'txbox-binding-'))
afterAll(() => rmSync(reportDir, { recursive: true, force: true }))

describe('describeConformance', () => {
  it('fails the run when the target setup() throws, and reports every case as a target error', () => {
    const vitest = join(createRequire(import.meta.url).resolve('vitest/package.json'), '..', 'vitest.mjs')
    const config = fileURLToPath(new URL('./fixtures/vitest-binding.config.ts', import.meta.url))
    const run = spawnSync(process.execPath, [vitest, 'run', '--config', config], {
      encoding: 'utf8',
      env: { ...process.env, TXBOX_REPORT_DIR: reportDir, TXBOX_REQUIRE_ALL: '', CI: '1' },
      timeout: 120_000,
    })
    const output = `${run.stdout}\n${run.stderr}`
    expect(run.status, output).toBe(1)
    expect(output).toContain(
      'conformance target setup-throws: setup() failed: Error: password authentication failed',
    )
    expect(output).not.toMatch(/NOT RUN/)
    const report = JSON.parse(readFileSync(join(reportDir, 'setup-throws.json'), 'utf8'))
    expect(report.targetError.stage).toBe('setup')
    expect(report.summary.total).toBeGreaterThan(0)
    expect(report.summary.errors).toBe(report.summary.total)
    expect(report.cases.map((result: { id: string }) => result.id)).toEqual(
      expect.arrayContaining(conformanceCases.slice(0, 3).map((c) => c.id)),
    )
    expect(report.ok).toBe(false)
  })
})
