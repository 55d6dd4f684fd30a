import { describe, expect, it } from 'vitest'
import {
  assertEventFits,
  createMemoryStore,
  DEFAULT_MAX_EVENT_BYTES,
  MAX_EVENT_ID_LENGTH,
  natsMessageBytes,
  PayloadTooLargeError,
  resolveMaxEventBytes,
  ValidationError,
  Validator,
} from '../src/index.js'

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

/** Every character `String.prototype.trim` removes (ECMAScript WhiteSpace and LineTerminator). */
const TRIMMED_CHARACTERS = [
  '\t',
  '\n',
  '\u000b',
  '\f',
  '\r',
  ' ',
  '\u00a0',
  '\u1680',
  '\u2000',
  '\u2001',
  '\u2002',
  '\u2003',
  '\u2004',
  '\u2005',
  '\u2006',
  '\u2007',
  '\u2008',
  '\u2009',
  '\u200a',
  '\u2028',
  '\u2029',
  '\u202f',
  '\u205f',
  '\u3000',
  '\ufeff',
]

describe('ids that a NATS header carries verbatim, required at creation only', () => {
  const v = new Validator('x')
  const params = (eventId: string) => ({ eventId, subject: 's', payload: 'p' })

  it('knows the same whitespace as String.prototype.trim (what nats.js applies to header values)', () => {
    // Guard the table itself: every listed character is trimmed, and no other code point below U+10000 is.
    const trimmed = []
    for (let code = 0; code < 0x10000; code++) {
      const char = String.fromCharCode(code)
      if (`a${char}`.trim() === 'a') trimmed.push(char)
    }
    expect(trimmed).toEqual(TRIMMED_CHARACTERS)
  })

  it('rejects an id with leading or trailing whitespace, naming the field and the fix', () => {
    for (const char of TRIMMED_CHARACTERS) {
      for (const id of [`o-1${char}`, `${char}o-1`]) {
        const message = catchMessage(() => v.enqueueParams(params(id)))
        expect(message).toMatch(
          /^\[txbox\] \[x\] eventId must not (start or end with whitespace|contain control characters)/,
        )
        expect(message).toMatch(/Remove the whitespace|Use printable characters/)
        expect(() => v.inboxParams(params(id))).toThrow(ValidationError)
      }
    }
    expect(catchMessage(() => v.enqueueParams(params('o-1 ')))).toContain('it has U+0020')
  })

  it('rejects every control character anywhere in the id: C0, DEL and C1', () => {
    const controls = [
      ...Array.from({ length: 0x20 }, (_, code) => String.fromCharCode(code)),
      ...Array.from({ length: 0x21 }, (_, code) => String.fromCharCode(0x7f + code)),
    ]
    for (const char of controls) {
      const message = catchMessage(() => v.enqueueParams(params(`a${char}b`)))
      expect(message).toContain('eventId must not contain control characters')
      expect(message).toContain('at index 1')
      expect(() => v.inboxParams(params(`a${char}b`))).toThrow(ValidationError)
    }
    expect(catchMessage(() => v.enqueueParams(params('a\r\nb')))).toContain('U+000D at index 1')
  })

  it('accepts inner spaces, unicode, quotes and colons: all travel verbatim', () => {
    for (const id of [
      'o 1',
      'é',
      'e\u0301',
      'ß',
      '🎉',
      'a:b',
      '"q"',
      "'",
      'x'.repeat(MAX_EVENT_ID_LENGTH),
      'a\u00a0b',
    ]) {
      expect(v.enqueueParams(params(id)).eventId).toBe(id)
      expect(v.inboxParams(params(id)).eventId).toBe(id)
    }
  })

  it('still accepts old ids in lookups, so stored events stay reachable', async () => {
    expect(v.eventId('o-1 ')).toBe('o-1 ')
    expect(v.eventId('a\r\nb')).toBe('a\r\nb')
    expect(v.eventIds([' legacy', 'tab\t'])).toEqual([' legacy', 'tab\t'])
    const store = createMemoryStore()
    expect(await store.outbox.get('o-1 ')).toBeNull()
    await expect(store.outbox.markAsSent('o-1 ')).rejects.toMatchObject({ code: 'EVENT_NOT_FOUND' })
    await expect(store.outbox.requeueFailed(['a\nb'])).rejects.toMatchObject({ code: 'EVENT_NOT_FOUND' })
    await expect(store.outbox.findOrCreate(params('o-1 '))).rejects.toBeInstanceOf(ValidationError)
  })
})

describe('subjects NATS can publish to', () => {
  const v = new Validator('x')

  it('rejects empty tokens and wildcard tokens', () => {
    for (const subject of ['a..b', '.a', 'a.', '.', 'a.*', '*', '>', 'orders.>', 'a.*.b']) {
      const message = catchMessage(() => v.subject(subject))
      expect(message).toMatch(/subject must (not have an empty token|be a literal subject)/)
      expect(message).toContain(JSON.stringify(subject))
    }
  })

  it("accepts '*' and '>' inside a longer token, which nats-server treats as ordinary characters", () => {
    for (const subject of ['a*b', 'orders.v>2', 'orders.*x', 'orders.x>', 'é.$sys', 'a-b_c']) {
      expect(v.subject(subject)).toBe(subject)
    }
  })

  it('checks every subject after a valid one: only an equal text skips the checks', () => {
    // The validator remembers the last subject it accepted (a batch repeats it); nothing else passes.
    const fresh = new Validator('x')
    expect(fresh.subject('orders.created')).toBe('orders.created')
    for (const bad of [undefined, null, '', 'orders..created', 'orders.*', ' orders.created', 42]) {
      expect(() => fresh.subject(bad)).toThrow(ValidationError)
    }
    // An equal text built apart is the same subject.
    expect(fresh.subject(['orders', 'created'].join('.'))).toBe('orders.created')
    // A subject that never passed is not remembered: `undefined` stays refused on a new validator.
    expect(() => new Validator('x').subject(undefined)).toThrow(
      '[txbox] [x] subject must be a non-empty string of at most 500 characters; got undefined',
    )
  })
})

describe('maxEventBytes: what NATS could never accept is refused at enqueue', () => {
  it('counts payload bytes and the header block as NATS writes it', () => {
    // NATS/1.0\r\n + Nats-Msg-Id: e\r\n + \r\n
    expect(natsMessageBytes({ eventId: 'e', payload: '' })).toBe(10 + 16 + 2)
    expect(natsMessageBytes({ eventId: 'e', payload: '🎉' })).toBe(28 + 4)
    // Txbox-Headers-Base64: <8 characters of base64 for "a\nb\n"> \r\n
    expect(natsMessageBytes({ eventId: 'e', payload: '', headers: 'a\nb\n' })).toBe(28 + 20 + 4 + 8)
    expect(natsMessageBytes({ eventId: 'e', payload: '', headers: '{"k":"v"}' })).toBe(28 + 1 + 4 + 1)
  })

  it('raises PayloadTooLargeError one byte over the limit, not at it', () => {
    const event = { eventId: 'big', payload: 'x'.repeat(1000), headers: ' needs base64 ' }
    const size = natsMessageBytes(event)
    expect(() => assertEventFits('x', event, size)).not.toThrow()
    const error = (() => {
      try {
        assertEventFits('x', event, size - 1)
      } catch (caught) {
        return caught
      }
      return undefined
    })()
    expect(error).toBeInstanceOf(PayloadTooLargeError)
    expect(error).toMatchObject({ sizeBytes: size, limitBytes: size - 1, eventId: 'big' })
    expect((error as Error).message).toMatch(/NATS message.*maxEventBytes/)
  })

  it('validates the option: a positive integer, at most the hard limit; default 1 MiB or the hard limit', () => {
    expect(resolveMaxEventBytes('x', undefined)).toBe(DEFAULT_MAX_EVENT_BYTES)
    expect(resolveMaxEventBytes('x', undefined, 409_600)).toBe(409_600)
    expect(resolveMaxEventBytes('x', 8 * 1_048_576)).toBe(8 * 1_048_576)
    for (const bad of [0, -1, 1.5, Number.NaN, '1024', 2 ** 53]) {
      expect(() => resolveMaxEventBytes('x', bad)).toThrow(/maxEventBytes must be a positive integer/)
    }
    expect(() => resolveMaxEventBytes('x', 409_601, 409_600)).toThrow(/maxEventBytes must be at most 409600/)
  })

  it('is enforced by the memory store, before any write, and exposed on its capabilities', async () => {
    const store = createMemoryStore({ maxEventBytes: 100 })
    expect(store.capabilities.maxEventBytes).toBe(100)
    expect(Object.isFrozen(store.capabilities)).toBe(true)
    expect(createMemoryStore().capabilities.maxEventBytes).toBe(DEFAULT_MAX_EVENT_BYTES)
    const small = { eventId: 'small', subject: 's', payload: 'ok' }
    const huge = { eventId: 'huge', subject: 's', payload: 'x'.repeat(100) }
    await expect(store.outbox.findOrCreateMany([small, huge])).rejects.toBeInstanceOf(PayloadTooLargeError)
    expect(store.outbox.snapshot()).toEqual([])
    expect(() => createMemoryStore({ maxEventBytes: 0 })).toThrow(ValidationError)
  })
})
