/**
 * A lossless escape for stores whose text type cannot hold U+0000 (PostgreSQL `text`,
 * FerretDB strings). U+0001 is the escape character: `\u0001` becomes `\u0001\u0001` and
 * `\u0000` becomes `\u0001\u0002`. Text without either character, which is every JSON
 * document, is stored unchanged, so the stored column stays readable and queryable.
 */
const ESCAPE = '\u0001'
const NUL = '\u0000'
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching NUL and the escape character is this codec's purpose
const NEEDS_ESCAPE = /[\u0000\u0001]/g
// biome-ignore lint/suspicious/noControlCharactersInRegex: the escape sequences are control characters by design
const ESCAPED = /\u0001([\u0001\u0002])/g

/** Escapes U+0000 and U+0001; other text is returned as is. */
export const encodeStoredText = (text: string): string =>
  text.indexOf(NUL) === -1 && text.indexOf(ESCAPE) === -1
    ? text
    : text.replace(NEEDS_ESCAPE, (char) => (char === NUL ? '\u0001\u0002' : '\u0001\u0001'))

/** The inverse of {@link encodeStoredText}. */
export const decodeStoredText = (stored: string): string =>
  stored.indexOf(ESCAPE) === -1
    ? stored
    : stored.replace(ESCAPED, (_, code: string) => (code === '\u0002' ? NUL : ESCAPE))

/** The UTF-8 size of a string in bytes, for stores with a hard item limit. */
export const utf8Bytes = (text: string): number => Buffer.byteLength(text, 'utf8')
