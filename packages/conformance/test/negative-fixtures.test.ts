import { describe, expect, it } from 'vitest'
import { runConformance } from '../src/index.js'
import { brokenAdapters } from './broken-adapters.js'

describe('the suite catches the defects it exists for', () => {
  for (const { target, mustFail } of brokenAdapters) {
    it(`${target.name} fails exactly ${mustFail.join(', ')}`, async () => {
      const report = await runConformance(target)
      const failed = report.cases.filter((result) => result.status === 'fail').map((result) => result.id)
      expect(failed).toEqual(mustFail)
      expect(report.ok).toBe(false)
      expect(report.summary.passed).toBe(report.summary.total - mustFail.length - report.summary.skipped)
    })
  }
})
