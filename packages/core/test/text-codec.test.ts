import { describe, expect, it } from 'vitest'
import { decodeStoredText, encodeStoredText } from '../src/index.js'

/** A deterministic generator, so a failure reproduces. */
const random = (seed: number) => () => {
  seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
  return seed / 2 ** 31
}

describe('the lossless U+0000 text codec', () => {
  it('leaves text without U+0000 or U+0001 untouched (the stored column stays readable)', () => {
    for (const text of ['', '{"a":1}', 'emoji 🎉', 'tab\tnewline\n', '\u0002 alone']) {
      expect(encodeStoredText(text)).toBe(text)
    }
  })

  it('never stores U+0000', () => {
    expect(encodeStoredText('a\u0000b\u0000')).not.toContain('\u0000')
  })

  it('round-trips every mix of NUL, the escape character and the escape sequences', () => {
    const alphabet = ['\u0000', '\u0001', '\u0002', 'a', '🎉', '\\', '\u0001\u0002']
    const next = random(42)
    for (let run = 0; run < 2_000; run++) {
      const length = Math.floor(next() * 12)
      const text = Array.from({ length }, () => alphabet[Math.floor(next() * alphabet.length)]).join('')
      expect(decodeStoredText(encodeStoredText(text))).toBe(text)
    }
  })

  it('decodes text that was stored before it needed escaping', () => {
    expect(decodeStoredText('plain')).toBe('plain')
    expect(decodeStoredText('\u0001\u0002x\u0001\u0001')).toBe('\u0000x\u0001')
  })
})
