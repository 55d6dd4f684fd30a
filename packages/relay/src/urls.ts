/**
 * The URL as it may appear in a log line: the password (userinfo after the first `:`) and
 * any `password=` / `secret=` query parameter replaced by `***`. Works on strings that
 * `new URL()` cannot parse (MongoDB seed lists, malformed input), since those are logged too.
 */
export const redactUrl = (url: string): string => {
  let redacted = url
  const schemeEnd = redacted.indexOf('://')
  if (schemeEnd >= 0) {
    const authorityStart = schemeEnd + 3
    const pathStart = redacted.slice(authorityStart).search(/[/?#]/)
    const authorityEnd = pathStart < 0 ? redacted.length : authorityStart + pathStart
    const authority = redacted.slice(authorityStart, authorityEnd)
    // The last `@` ends the userinfo: an unencoded `@` in a password must not leak its tail.
    const at = authority.lastIndexOf('@')
    if (at >= 0) {
      const userinfo = authority.slice(0, at)
      const colon = userinfo.indexOf(':')
      if (colon >= 0) {
        redacted = `${redacted.slice(0, authorityStart)}${userinfo.slice(0, colon)}:***${redacted.slice(authorityStart + at)}`
      }
    }
  }
  return redacted.replace(/([?&](?:password|pass|secret|token)=)[^&#]*/gi, '$1***')
}

/**
 * Why `url` can never be used with one of `schemes` (e.g. `['postgres:', 'postgresql:']`),
 * or undefined when it parses: a syntax error, another scheme, or userinfo whose percent
 * escapes do not decode (drivers fail on those later, with a message that names no URL).
 */
export const urlProblem = (url: string, schemes: readonly string[]): string | undefined => {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return `is not a valid URL (expected ${schemes.map((scheme) => `${scheme}//...`).join(' or ')})`
  }
  if (!schemes.includes(parsed.protocol))
    return `must start with ${schemes.map((scheme) => `${scheme}//`).join(' or ')}; got ${parsed.protocol}//`
  for (const [part, value] of [
    ['user name', parsed.username],
    ['password', parsed.password],
  ] as const) {
    try {
      decodeURIComponent(value)
    } catch {
      return `has a ${part} with a malformed percent escape (write a literal % as %25)`
    }
  }
  if (parsed.hostname === '') return 'has no host'
  return undefined
}
