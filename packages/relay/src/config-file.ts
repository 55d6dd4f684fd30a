import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { ConfigurationError } from './errors.js'

/** How a flag's value may be written in the file. */
export type FileValueType = 'string' | 'boolean' | 'on-off' | 'list' | 'subject-map'

/** A `--config` file, read and checked: every key known, every value of the right shape. */
export interface ConfigFile {
  readonly path: string
  /** Per flag name: the text the flag would carry, a boolean (`migrate`), or a subject-map table as written. */
  readonly values: Readonly<Record<string, unknown>>
  /** `relay.yaml key lease-ms`: how errors name a value from this file. */
  label(name: string): string
}

const describe = (value: unknown): string =>
  value === null
    ? 'null'
    : Array.isArray(value)
      ? 'a list'
      : typeof value === 'object'
        ? 'a mapping'
        : JSON.stringify(value)

const errorCode = (error: unknown): string =>
  (error as NodeJS.ErrnoException | null)?.code ?? (error instanceof Error ? error.message : String(error))

/**
 * The content of a secret's file (`TXBOX_RELAY_URL_FILE=/run/secrets/url`), without one final
 * line break: editors and `echo` add one, and no URL, password or token ends with it.
 */
export const readSecretFile = (label: string, path: string): string => {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    throw new ConfigurationError(`${label} ${JSON.stringify(path)} cannot be read: ${errorCode(error)}`, {
      cause: error,
    })
  }
  return text.replace(/\r?\n$/, '')
}

/** The flag a camelCase or snake_case key was probably meant to be (`batchSize` -> `batch-size`). */
const suggestion = (key: string, keys: readonly string[]): string => {
  const kebab = key
    .replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)
    .replace(/_/g, '-')
    .replace(/^--?/, '')
  return keys.includes(kebab) && kebab !== key ? ` (did you mean ${kebab}?)` : ''
}

/**
 * Reads a YAML or JSON file (JSON is YAML 1.2, read by the same parser, so a key written
 * twice is refused in both instead of the last one silently winning). Keys are the flags'
 * names; unknown keys and values of the wrong shape are refused, naming the key.
 */
export const readConfigFile = (
  path: string,
  flagLabel: string,
  keys: readonly string[],
  typeOf: (name: string) => FileValueType,
): ConfigFile => {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    throw new ConfigurationError(`${flagLabel} ${JSON.stringify(path)} cannot be read: ${errorCode(error)}`, {
      cause: error,
    })
  }
  let document: unknown
  try {
    // YAML 1.2 core schema: `on`, `off`, `yes` stay strings, as the flags write them.
    document = parse(text, { uniqueKeys: true, prettyErrors: true, strict: true })
  } catch (error) {
    throw new ConfigurationError(
      `${flagLabel} ${JSON.stringify(path)} is not valid YAML or JSON: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    )
  }
  const label = (name: string): string => `${path} key ${name}`
  if (document === null || document === undefined) return { path, values: {}, label }
  if (typeof document !== 'object' || Array.isArray(document))
    throw new ConfigurationError(
      `${flagLabel} ${JSON.stringify(path)} must hold a mapping of option: value; got ${describe(document)}`,
    )
  const values: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(document)) {
    if (!keys.includes(key))
      throw new ConfigurationError(
        `${path} has the unknown key ${JSON.stringify(key)}${suggestion(key, keys)}; keys are the flags' names: ${keys.join(', ')}`,
      )
    const fail = (expected: string): never => {
      throw new ConfigurationError(`${label(key)} must be ${expected}; got ${describe(value)}`)
    }
    const type = typeOf(key)
    if (typeof value === 'string') values[key] = value
    else if (typeof value === 'number' && Number.isFinite(value) && type !== 'boolean' && type !== 'on-off')
      values[key] = String(value)
    else if (type === 'boolean') values[key] = typeof value === 'boolean' ? value : fail('true or false')
    else if (type === 'on-off')
      values[key] = value === true ? 'on' : value === false ? 'off' : fail('on or off')
    else if (type === 'list') {
      if (!Array.isArray(value) || value.length === 0)
        fail('a list of strings, or one comma separated string')
      values[key] = (value as unknown[])
        .map((item, index) =>
          typeof item === 'string' && item !== '' && !item.includes(',')
            ? item
            : fail(`a list of non-empty strings without "," (item ${index + 1} is ${describe(item)})`),
        )
        .join(',')
    } else if (type === 'subject-map') {
      if (value === null || typeof value !== 'object')
        fail('a list of { from, to }, a mapping of subject: subject, or from=to pairs in one string')
      values[key] = value
    } else fail('a string or a number')
  }
  return { path, values, label }
}
