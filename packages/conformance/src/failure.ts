import { AssertionError } from 'node:assert'

/**
 * One failed check or thrown error, described so that a third party can act on it without
 * rerunning under a debugger: the error's identity, what it wrapped and where it came from.
 */
export interface FailureDetail {
  /** `check`: an assertion failed and the case went on; `error`: a throw ended the case. */
  readonly kind: 'check' | 'error'
  /** The error's `name`, e.g. `AssertionError`, `StorageError`, `TypeError`. */
  readonly name: string
  readonly message: string
  /** The error's `code` property, when it has one (txbox errors and driver errors do). */
  readonly code?: string
  /** The `cause` chain, outermost first, each as `Name [code]: message`. */
  readonly cause?: string
  /** The top stack frames (`at fn (file:line:col)`), without Node's internals. */
  readonly stack?: readonly string[]
}

/** How many stack frames a failure keeps: enough to find the line, short enough to read. */
export const STACK_FRAMES = 5

const describeValue = (value: unknown): string => {
  if (value instanceof Date) return `Date(${Number.isNaN(value.getTime()) ? 'invalid' : value.toISOString()})`
  if (typeof value === 'bigint') return `${value}n`
  try {
    const text = JSON.stringify(value)
    if (text === undefined) return String(value)
    return text.length > 200 ? `${text.slice(0, 200)}...` : text
  } catch {
    return String(value)
  }
}

const oneLine = (error: unknown): string => {
  if (!(error instanceof Error)) return describeValue(error)
  const code = (error as { code?: unknown }).code
  return `${error.name}${code !== undefined ? ` [${String(code)}]` : ''}: ${error.message}`
}

const causeChain = (error: unknown): string | undefined => {
  const chain: string[] = []
  let current = error instanceof Error ? error.cause : undefined
  // A cause may point back at its wrapper; three levels are all a reader needs.
  while (current !== undefined && current !== null && chain.length < 3) {
    chain.push(oneLine(current))
    current = current instanceof Error ? current.cause : undefined
  }
  return chain.length > 0 ? chain.join(' <- ') : undefined
}

/** The suite's own runner frames, which every failure shares: they would hide the adapter's. */
const SUITE_MACHINERY = /conformance[\\/](?:dist|src)[\\/](?:runner|checks|assertions)\.[cm]?[jt]s/

const topFrames = (error: Error): string[] =>
  (error.stack ?? '')
    .split('\n')
    .map((line) => line.trim())
    .filter(
      (line) => line.startsWith('at ') && !line.includes('node:internal') && !SUITE_MACHINERY.test(line),
    )
    .slice(0, STACK_FRAMES)

/**
 * A custom assertion message says what was checked but not what was found: node:assert
 * keeps the values aside, so they are added here.
 */
const assertionMessage = (error: AssertionError): string => {
  // Node adds the comparison (`1 !== 2`, or a diff) after a custom message; older versions did not.
  const message = error.message.replace(/\n\s*\n/g, '\n').trimEnd()
  // An AssertionError built from a message alone (expectTxboxError's) compared no values.
  return error.generatedMessage || message.includes('\n') || error.operator === undefined
    ? message
    : `${message} (expected ${describeValue(error.expected)}, got ${describeValue(error.actual)})`
}

/** A message longer than this is cut in the report (a diff of thousands of ids helps no one). */
const MAX_MESSAGE_CHARS = 4000

const cut = (text: string): string =>
  text.length > MAX_MESSAGE_CHARS
    ? `${text.slice(0, MAX_MESSAGE_CHARS)}... (${text.length - MAX_MESSAGE_CHARS} more characters)`
    : text

/** Lines of a message the table prints; the JSON report keeps the whole message. */
const PRINTED_MESSAGE_LINES = 12

/** Describes a thrown value or a failed check for the report. */
export const describeFailure = (error: unknown, kind: FailureDetail['kind']): FailureDetail => {
  if (!(error instanceof Error)) return { kind, name: typeof error, message: describeValue(error) }
  const code = (error as { code?: unknown }).code
  const cause = causeChain(error)
  const stack = topFrames(error)
  const assertion = error instanceof AssertionError
  return {
    kind,
    name: error.name,
    message: cut(assertion ? assertionMessage(error) : error.message),
    // node:assert's own code says nothing to an adapter author.
    ...(code !== undefined && !assertion ? { code: String(code) } : {}),
    ...(cause !== undefined ? { cause } : {}),
    ...(stack.length > 0 ? { stack } : {}),
  }
}

/** A failure as indented text lines: the table prints them, the JSON report keeps them joined. */
export const failureLines = (failure: FailureDetail): string[] => {
  const head =
    failure.kind === 'check'
      ? `check failed: ${failure.message}`
      : `${failure.name}${failure.code !== undefined ? ` [${failure.code}]` : ''}: ${failure.message}`
  const message = head.split('\n')
  return [
    ...message.slice(0, PRINTED_MESSAGE_LINES),
    ...(message.length > PRINTED_MESSAGE_LINES
      ? [`  ... (${message.length - PRINTED_MESSAGE_LINES} more lines in the JSON report)`]
      : []),
    ...(failure.cause !== undefined ? [`  cause: ${failure.cause}`] : []),
    // The frame of a failed check is the case's line; an error's frames show the adapter's path.
    ...(failure.stack ?? [])
      .slice(0, failure.kind === 'check' ? 1 : STACK_FRAMES)
      .map((frame) => `  ${frame}`),
  ]
}
