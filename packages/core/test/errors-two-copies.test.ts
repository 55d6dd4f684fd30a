import { describe, expect, it, vi } from 'vitest'

// Two module instances of errors.ts stand for the ES module and the CommonJS build of
// @txbox/core loaded side by side in one app (import in one place, require in another).
const loadCopy = async () => {
  vi.resetModules()
  return import('../src/errors.js')
}

describe('errors across two copies of @txbox/core', () => {
  it('instanceof holds for the same class of the other copy, and only for it', async () => {
    const esm = await loadCopy()
    const cjs = await loadCopy()
    expect(esm.ValidationError).not.toBe(cjs.ValidationError)

    const error = new cjs.ValidationError('sqlite', 'bad input')
    expect(error instanceof esm.ValidationError).toBe(true)
    expect(error instanceof esm.TxboxError).toBe(true)
    expect(error instanceof esm.LeaseLostError).toBe(false)
    expect(error instanceof esm.StorageError).toBe(false)

    const lost = new esm.LeaseLostError('postgres', 'e1', 'w1')
    expect(lost instanceof cjs.LeaseLostError).toBe(true)
    expect(lost instanceof cjs.ValidationError).toBe(false)
  })

  it('runStorageOperation of one copy passes the other copy txbox errors through unwrapped', async () => {
    vi.resetModules()
    const esm = await import('../src/kernel/storage-failure.js')
    const cjs = await loadCopy()
    const thrown = new cjs.EventNotFoundError('redis', 'e1')
    await expect(
      esm.runStorageOperation('redis', 'outbox.markAsSent', esm.classifyUnknown, () =>
        Promise.reject(thrown),
      ),
    ).rejects.toBe(thrown)
  })

  it('a look-alike is not a txbox error', async () => {
    const { TxboxError, ValidationError } = await loadCopy()
    const lookalike = Object.assign(new Error('x'), { name: 'ValidationError', code: 'VALIDATION' })
    expect(lookalike instanceof ValidationError).toBe(false)
    expect(lookalike instanceof TxboxError).toBe(false)
    expect(TxboxError[Symbol.hasInstance](null)).toBe(false)
  })
})
