import { describe, expect, it } from 'vitest'
import { MAX_EVENT_ID_LENGTH, ValidationError, Validator } from '../src/index.js'

const catchMessage = (action: () => unknown): string => {
  try {
    action()
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError)
    return (error as Error).message
  }
  throw new Error('expected a ValidationError')
}

describe('Validator', () => {
  it('gives every adapter the same message, behind its own prefix', () => {
    const postgres = catchMessage(() => new Validator('postgres').eventId(''))
    const redis = catchMessage(() => new Validator('redis').eventId(''))
    expect(postgres.startsWith('[txbox] [postgres] ')).toBe(true)
    expect(postgres.replace('[postgres]', '')).toBe(redis.replace('[redis]', ''))
  })

  it('never puts a whole large value into a message', () => {
    const message = catchMessage(() => new Validator('x').eventId('y'.repeat(100_000)))
    expect(message.length).toBeLessThan(200)
    expect(message).toContain('length 100000')
  })

  it('accepts the boundaries and rejects one past them', () => {
    const v = new Validator('x')
    expect(v.eventId('a'.repeat(MAX_EVENT_ID_LENGTH))).toHaveLength(MAX_EVENT_ID_LENGTH)
    expect(() => v.eventId('a'.repeat(MAX_EVENT_ID_LENGTH + 1))).toThrow(ValidationError)
    expect(v.limit(undefined)).toBe(100)
    expect(v.limit(10_000)).toBe(10_000)
    expect(() => v.limit(10_001)).toThrow(/limit must be an integer from 1 to 10000/)
    expect(v.nonNegative(0, 'olderThanDays')).toBe(0)
    expect(v.nonNegative(0.5, 'olderThanDays')).toBe(0.5)
    expect(() => v.nonNegative(-0.001, 'olderThanDays')).toThrow(/olderThanDays must be a finite number >= 0/)
    expect(() => v.leaseMs(2 ** 31)).toThrow(ValidationError)
  })

  it('rejects a lone surrogate, which no UTF-8 store can keep unchanged, and accepts a pair', () => {
    const v = new Validator('x')
    expect(() => v.text('\uD83D', 'payload')).toThrow(/lone surrogate/)
    expect(() => v.text('\uDE00x', 'payload')).toThrow(/lone surrogate/)
    expect(v.text('\uD83D\uDE00', 'payload')).toBe('😀')
  })

  it('normalizes enqueue params: absent optional fields are absent, not undefined', () => {
    const params = new Validator('x').enqueueParams({
      eventId: 'e',
      subject: 's',
      payload: 'p',
      headers: undefined,
    })
    expect(params).toEqual({ eventId: 'e', subject: 's', payload: 'p' })
    expect('headers' in params).toBe(false)
  })

  it('requires stream and streamSeq together', () => {
    const v = new Validator('x')
    const base = { eventId: 'e', subject: 's', payload: 'p' }
    expect(() => v.inboxParams({ ...base, stream: 'S' })).toThrow(/together/)
    expect(v.inboxParams({ ...base, stream: 'S', streamSeq: 9 })).toMatchObject({ stream: 'S', streamSeq: 9 })
  })

  it('only accepts safe identifiers for names interpolated into SQL or keys', () => {
    const v = new Validator('x')
    expect(v.identifier('txbox_', 'tablePrefix')).toBe('txbox_')
    for (const bad of ['', '1abc', 'a-b', 'a b', 'a;drop', 'x'.repeat(64), 'é']) {
      expect(() => v.identifier(bad, 'tablePrefix')).toThrow(/tablePrefix must match/)
    }
  })
})
