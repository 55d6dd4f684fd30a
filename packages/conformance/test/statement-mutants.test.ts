import { describe, expect, it } from 'vitest'
import { checkMutant, type StatementMutant, statementRewriter } from '../src/index.js'

const statements = {
  claim: 'UPDATE t SET s = 1 WHERE due <= $1 ORDER BY seq',
  cleanup: 'DELETE FROM t WHERE sent < $1',
}

const mutant = (overrides: Partial<StatementMutant>): StatementMutant => ({
  id: 'claim: <= → <',
  statements: ['claim'],
  find: 'due <= $1',
  replace: 'due < $1',
  kills: ['outbox.order.frozen-clock'],
  ...overrides,
})

describe('checkMutant', () => {
  it('accepts text that occurs once in its statement and nowhere else', () => {
    expect(() => checkMutant(mutant({}), statements)).not.toThrow()
  })

  it('refuses text the statement no longer contains, so a refactor cannot make the mutant a no-op', () => {
    expect(() => checkMutant(mutant({ find: 'due < $1', replace: 'due <= $1' }), statements)).toThrow(
      /"due < \$1" occurs 0 time\(s\) in statement claim, expected 1/,
    )
  })

  it('refuses text that a statement the mutant does not name also contains', () => {
    expect(() => checkMutant(mutant({ find: '$1', replace: '$2' }), statements)).toThrow(
      /occurs 1 time\(s\) in statement cleanup, expected 0/,
    )
  })

  it('refuses an unknown statement, a replacement equal to the text, and a survivor without a reason', () => {
    expect(() => checkMutant(mutant({ statements: ['claim', 'reset'] }), statements)).toThrow(
      /no statement named reset/,
    )
    expect(() => checkMutant(mutant({ replace: 'due <= $1' }), statements)).toThrow(/replace equals find/)
    expect(() => checkMutant(mutant({ kills: [] }), statements)).toThrow(/names no case that kills it/)
  })
})

describe('statementRewriter', () => {
  it('rewrites only the statements that contain the text, and counts each rewrite', () => {
    const rewriter = statementRewriter(mutant({}))
    expect(rewriter.rewrite(statements.cleanup)).toBe(statements.cleanup)
    expect(rewriter.hits()).toBe(0)
    expect(rewriter.rewrite(statements.claim)).toBe('UPDATE t SET s = 1 WHERE due < $1 ORDER BY seq')
    expect(rewriter.rewrite(statements.claim)).toBe('UPDATE t SET s = 1 WHERE due < $1 ORDER BY seq')
    expect(rewriter.hits()).toBe(2)
  })
})
