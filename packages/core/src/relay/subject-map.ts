import { ValidationError } from '../errors.js'
import type { OutboxEvent } from '../outbox.js'
import { MAX_SUBJECT_LENGTH, Validator } from '../validation.js'

/**
 * One entry of a subject map: events stored under a subject that `from` matches are
 * published to `to`. `from` is a subject or a NATS pattern (`*` one token, `>` one or more
 * trailing tokens); the wildcards of `to` take what those of `from` matched, in order.
 */
export interface SubjectMapEntry {
  from: string
  to: string
}

/** Maps a stored subject to the subject to publish to; its answer is checked on every call. */
export type SubjectMapFunction = (subject: string, event: OutboxEvent) => string

/**
 * A subject map: entries in order (the first that matches wins), an object whose key order
 * is that order (`{ 'user.created': 'prod.users.created', 'order.*': 'prod.orders.*' }`),
 * or a function.
 */
export type SubjectMapOption =
  | readonly SubjectMapEntry[]
  | Readonly<Record<string, string>>
  | SubjectMapFunction

/** Where an event goes: the subject to publish to, and the table entry that chose it (none: unmapped or a function). */
export interface MappedSubject {
  subject: string
  entry: SubjectMapEntry | undefined
}

const WHITESPACE = /\s/
const describe = (value: unknown): string =>
  typeof value === 'string' ? JSON.stringify(value) : String(value)
const isWildcard = (token: string): boolean => token === '*' || token === '>'

/**
 * Why `pattern` is not a NATS subject pattern (tokens separated by `.`, none empty, `>` only
 * last), or undefined. `*` and `>` inside a longer token are ordinary characters to NATS.
 */
export const subjectPatternProblem = (pattern: unknown): string | undefined => {
  if (typeof pattern !== 'string' || pattern.length === 0 || pattern.length > MAX_SUBJECT_LENGTH)
    return `must be a non-empty string of at most ${MAX_SUBJECT_LENGTH} characters; got ${describe(pattern)}`
  if (WHITESPACE.test(pattern)) return `must not contain whitespace; got ${describe(pattern)}`
  const tokens = pattern.split('.')
  if (tokens.includes(''))
    return `has an empty token (a leading or trailing '.', or '..'); got ${describe(pattern)}`
  if (tokens.slice(0, -1).includes('>'))
    return `has '>' before its last token; got ${describe(pattern)}: '>' matches the remaining tokens, so it can only come last`
  return undefined
}

/**
 * Whether every subject that `inner` matches is matched by `outer` (both NATS patterns or
 * subjects): `orders.>` covers `orders.*.created` and `orders.eu`, `orders.*` does not
 * cover `orders.>`.
 */
export const subjectPatternCovers = (outer: string, inner: string): boolean => {
  const outerTokens = outer.split('.')
  const innerTokens = inner.split('.')
  for (let index = 0; index < outerTokens.length; index++) {
    const mine = outerTokens[index] as string
    const theirs = innerTokens[index]
    // `>` takes one or more tokens, and `inner` has at least one left here.
    if (mine === '>') return theirs !== undefined
    if (theirs === undefined) return false
    if (mine === '*') {
      if (theirs === '>') return false
      continue
    }
    if (mine !== theirs) return false
  }
  return innerTokens.length === outerTokens.length
}

/** An entry with its tokens split once, and its 1-based place for messages. */
interface CompiledEntry {
  entry: SubjectMapEntry
  from: readonly string[]
  to: readonly string[]
  label: string
}

const entriesOf = (
  component: string,
  option: Exclude<SubjectMapOption, SubjectMapFunction>,
): SubjectMapEntry[] => {
  if (Array.isArray(option)) {
    return option.map((entry: unknown, index) => {
      const candidate = entry as Partial<SubjectMapEntry> | null
      if (typeof candidate !== 'object' || candidate === null || Array.isArray(candidate))
        throw new ValidationError(
          component,
          `subjectMap entry ${index + 1} must be an object { from, to }; got ${describe(entry)}`,
        )
      const extra = Object.keys(candidate).filter((key) => key !== 'from' && key !== 'to')
      if (extra.length > 0)
        throw new ValidationError(
          component,
          `subjectMap entry ${index + 1} has unknown key ${extra.map((key) => JSON.stringify(key)).join(', ')}; an entry is { from, to }`,
        )
      return { from: candidate.from as string, to: candidate.to as string }
    })
  }
  if (typeof option !== 'object' || option === null)
    throw new ValidationError(
      component,
      `subjectMap must be a list of { from, to }, an object of subject -> subject, or a function; got ${describe(option)}`,
    )
  return Object.entries(option).map(([from, to]) => {
    // JavaScript lists integer-like keys first, whatever the order they were written in:
    // first-match-wins would then silently follow another order than the user's.
    if (/^(0|[1-9][0-9]*)$/.test(from))
      throw new ValidationError(
        component,
        `subjectMap key ${JSON.stringify(from)} is an integer, which an object keeps out of order; write the map as a list of { from, to }`,
      )
    return { from, to }
  })
}

const compileEntry = (component: string, entry: SubjectMapEntry, index: number): CompiledEntry => {
  const label = `subjectMap entry ${index + 1} (${describe(entry.from)} -> ${describe(entry.to)})`
  const fail = (message: string): never => {
    throw new ValidationError(component, `${label}: ${message}`)
  }
  const fromProblem = subjectPatternProblem(entry.from)
  if (fromProblem !== undefined) fail(`from ${fromProblem}`)
  const toProblem = subjectPatternProblem(entry.to)
  if (toProblem !== undefined) fail(`to ${toProblem}`)
  const from = entry.from.split('.')
  const to = entry.to.split('.')
  const stars = (tokens: readonly string[]) => tokens.filter((token) => token === '*').length
  if (to.includes('>') && !from.includes('>'))
    fail(`to ends in '>' but from has no '>' whose tokens it could take`)
  if (stars(to) !== 0 && stars(to) !== stars(from))
    fail(
      `to has ${stars(to)} '*' and from has ${stars(from)}: each '*' of to takes the token matched by the '*' of from at the same place in order, so give to as many '*' as from, or none`,
    )
  if (!to.some(isWildcard)) {
    // A literal target is published to as it is: it must be a subject NATS can publish to.
    try {
      new Validator(component).subject(entry.to)
    } catch (error) {
      fail(
        `to is not a subject to publish to: ${(error as Error).message.replace(/^\[txbox\] \[[^\]]*\] /, '')}`,
      )
    }
  }
  return { entry: { from: entry.from, to: entry.to }, from, to, label }
}

/** The tokens `*` matched and what `>` matched, or undefined when `from` does not match. */
const match = (
  from: readonly string[],
  subject: readonly string[],
): { stars: string[]; tail?: string } | undefined => {
  const stars: string[] = []
  for (let index = 0; index < from.length; index++) {
    const token = from[index] as string
    if (token === '>')
      return index < subject.length ? { stars, tail: subject.slice(index).join('.') } : undefined
    const actual = subject[index]
    if (actual === undefined) return undefined
    if (token === '*') stars.push(actual)
    else if (token !== actual) return undefined
  }
  return subject.length === from.length ? { stars } : undefined
}

/**
 * A validated subject map, applied by the relay at publish time: the stored event keeps its
 * subject, the publisher gets the mapped one.
 */
export class SubjectMap {
  /** The table's entries in order (empty for a function or no map). */
  readonly entries: readonly SubjectMapEntry[]
  readonly #compiled: readonly CompiledEntry[]
  readonly #fn: SubjectMapFunction | undefined
  readonly #validator: Validator

  /**
   * Validates the map. Refused, with a `ValidationError` naming the entry: a `from` or `to`
   * that is not a NATS subject or pattern, a `to` whose wildcards cannot be filled from
   * `from`'s, a literal `to` NATS cannot publish to, and an entry that can never match
   * because an earlier one matches everything it does.
   */
  constructor(option: SubjectMapOption | undefined, component = 'relay') {
    this.#validator = new Validator(component)
    this.#fn = typeof option === 'function' ? option : undefined
    const compiled =
      option === undefined || typeof option === 'function'
        ? []
        : entriesOf(component, option).map((entry, index) => compileEntry(component, entry, index))
    compiled.forEach((later, index) => {
      const earlier = compiled
        .slice(0, index)
        .find((entry) => subjectPatternCovers(entry.entry.from, later.entry.from))
      if (earlier !== undefined)
        throw new ValidationError(
          component,
          `${later.label} can never match: ${earlier.label} comes first and matches every subject it does (the first match wins); put the narrower entry first or remove it`,
        )
    })
    this.#compiled = compiled
    this.entries = compiled.map((entry) => entry.entry)
  }

  /**
   * The subject to publish `event` to: the first matching entry's target (wildcards filled
   * in), the function's answer, or the stored subject when nothing matches. Throws a
   * `ValidationError` when the result is not a subject NATS can publish to (a function's
   * bad answer, or a target that grew past the longest subject).
   */
  map(event: OutboxEvent): MappedSubject {
    if (this.#fn !== undefined) {
      const subject = this.#fn(event.subject, event)
      return { subject: this.#validator.subject(subject), entry: undefined }
    }
    const tokens = event.subject.split('.')
    for (const compiled of this.#compiled) {
      const found = match(compiled.from, tokens)
      if (found === undefined) continue
      let star = 0
      const subject = compiled.to
        .map((token) =>
          token === '*' ? (found.stars[star++] as string) : token === '>' ? (found.tail as string) : token,
        )
        .join('.')
      return { subject: this.#validator.subject(subject), entry: compiled.entry }
    }
    return { subject: event.subject, entry: undefined }
  }

  /**
   * The first entry with a target outside every one of `streamSubjects` (a publish there
   * would find no stream), as a message naming it; undefined when every target is covered.
   */
  uncoveredBy(streamSubjects: readonly string[]): string | undefined {
    for (const compiled of this.#compiled) {
      if (!streamSubjects.some((subjects) => subjectPatternCovers(subjects, compiled.entry.to)))
        return `${compiled.label}: to is not covered by the stream's subjects ${streamSubjects.map((subject) => JSON.stringify(subject)).join(', ')}, so JetStream would have no stream for it`
    }
    return undefined
  }
}
