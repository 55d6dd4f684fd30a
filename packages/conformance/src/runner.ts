import type { AssertionError } from 'node:assert'
import { type Capabilities, ManualClock } from '@txbox/core'
import { type CaseContext, CaseSkipped, type ConformanceCase, SUITE_EPOCH } from './case.js'
import { conformanceCases } from './cases/index.js'
import { collectFailedChecks } from './checks.js'
import { capabilityProblems } from './declared-capabilities.js'
import { describeFailure, type FailureDetail, failureLines } from './failure.js'
import { type CaseResult, type ConformanceReport, summarize, type TargetError } from './report.js'
import type {
  ConformanceFixture,
  ConformancePeer,
  ConformanceTarget,
  ServerConnection,
  TargetInfo,
} from './target.js'
import { areaNames, buildVerdict, caseArea } from './verdict.js'
import { SUITE_VERSION } from './version.js'

/** Selects cases whose id matches `only` (a substring, or a glob with `*`), or all of them. */
export const selectCases = (only?: string): readonly ConformanceCase[] => {
  if (!only) return conformanceCases
  const pattern = only.includes('*')
    ? new RegExp(
        `^${only
          .split('*')
          .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
          .join('.*')}$`,
      )
    : undefined
  return conformanceCases.filter((c) => (pattern ? pattern.test(c.id) : c.id.includes(only)))
}

/** How long one case may take by default before it fails as hung (`--case-timeout-ms`). */
export const CASE_TIMEOUT_MS = 120_000

/** Checks a per-case timeout given by a user; throws a message naming the option. */
export const checkCaseTimeout = (ms: number | undefined, option = 'caseTimeoutMs'): number => {
  if (ms === undefined) return CASE_TIMEOUT_MS
  if (!Number.isSafeInteger(ms) || ms <= 0)
    throw new Error(`${option} must be a positive integer number of milliseconds, got ${String(ms)}`)
  return ms
}

/** Checks `require` names against the capability areas; throws a message listing them. */
export const checkRequiredAreas = (required: readonly string[] | undefined): readonly string[] => {
  const unknown = (required ?? []).filter((area) => !areaNames().includes(area))
  if (unknown.length > 0)
    throw new Error(
      `unknown capability area ${unknown.map((area) => JSON.stringify(area)).join(', ')}: use ${areaNames().join(', ')}`,
    )
  return [...new Set(required ?? [])]
}

const withTimeout = async <T>(promise: Promise<T>, ms: number, label: string): Promise<T> => {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `${label} did not finish within ${ms} ms (raise it with --case-timeout-ms / caseTimeoutMs)`,
          ),
        ),
      ms,
    )
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** The target itself failed (`create()`, `dispose()`), not the contract: the case met a target error. */
class TargetFailure extends Error {
  constructor(what: string, cause: unknown) {
    super(`${what} failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
    this.name = 'TargetError'
  }
}

const failureText = (failures: readonly FailureDetail[]): string =>
  failures.map((failure) => failureLines(failure).join('\n')).join('\n')

/** What made a case uncertain before it ran: the server was not reached, or the target failed. */
export interface CaseBlock {
  readonly status: 'not-run' | 'error'
  readonly reason: string
}

/**
 * Runs one case on fresh fixtures and disposes them afterwards, whatever happened; returns
 * its result with every failed check and the error that ended it, if any.
 */
const executeCase = async (
  target: ConformanceTarget,
  c: ConformanceCase,
  capabilities: Capabilities,
  timeoutMs: number,
): Promise<CaseResult> => {
  const started = performance.now()
  const clock = new ManualClock(SUITE_EPOCH)
  const fixtures: ConformanceFixture[] = []
  const cleanups: (() => unknown)[] = []
  const open = async (fixtureClock: ManualClock) => {
    let fixture: ConformanceFixture
    try {
      fixture = await target.create({
        clock: fixtureClock.now,
        onDispose: (cleanup) => cleanups.push(cleanup),
      })
    } catch (error) {
      throw new TargetFailure('create()', error)
    }
    fixtures.push(fixture)
    return fixture
  }
  const peers: ConformancePeer[] = []
  const openPeer = async (fixture: ConformanceFixture) => {
    if (fixture.peer === undefined) return undefined
    let peer: ConformancePeer
    try {
      peer = await fixture.peer()
    } catch (error) {
      throw new TargetFailure('peer()', error)
    }
    peers.push(peer)
    return peer
  }
  const checks: AssertionError[] = []
  let thrown: unknown
  let threw = false
  try {
    await withTimeout(
      collectFailedChecks(checks, async () => {
        const context: CaseContext = {
          clock,
          store: await open(clock),
          capabilities,
          createStore: (other) => open(other ?? clock),
          openPeer: async (fixture) => openPeer(fixture ?? context.store),
        }
        await c.run(context)
      }),
      timeoutMs,
      c.id,
    )
  } catch (error) {
    thrown = error
    threw = true
  }
  // Peers first: their connections must not outlive the namespace they use.
  const peersClosed = await Promise.allSettled(peers.map((peer) => peer.dispose()))
  const disposed = await Promise.allSettled([
    ...fixtures.map((fixture) => fixture.dispose()),
    ...cleanups.map(async (cleanup) => cleanup()),
  ])
  const disposeFailures = [...peersClosed, ...disposed]
    .filter((result): result is PromiseRejectedResult => result.status === 'rejected')
    .map((result) => new TargetFailure('dispose()', result.reason))
  const failures = [
    ...checks.map((check) => describeFailure(check, 'check')),
    ...(threw ? [describeFailure(thrown, 'error')] : []),
    ...disposeFailures.map((failure) => describeFailure(failure, 'error')),
  ]
  const base = { id: c.id, title: c.title, area: caseArea(c.id), durationMs: performance.now() - started }
  if (thrown instanceof CaseSkipped && failures.length === 1)
    return { ...base, status: 'skip', reason: thrown.message }
  if (failures.length === 0) return { ...base, status: 'pass' }
  const detail = { error: failureText(failures), failures }
  // A check that failed judges the adapter even if the target broke afterwards.
  if (checks.length > 0 || (threw && !(thrown instanceof TargetFailure)))
    return { ...base, status: 'fail', ...detail }
  const targetFailure = (threw ? thrown : disposeFailures[0]) as TargetFailure
  return { ...base, status: 'error', reason: `target error: ${targetFailure.message}`, ...detail }
}

/**
 * One case's result: not run or a target error when `blocked`, skipped when the
 * capabilities exclude it, else run. The one status function of the CLI runner and the
 * vitest binding.
 */
export const certifyCase = async (input: {
  readonly target: ConformanceTarget
  readonly case: ConformanceCase
  readonly capabilities: Capabilities
  readonly timeoutMs?: number
  readonly blocked?: CaseBlock | undefined
}): Promise<CaseResult> => {
  const c = input.case
  const base = { id: c.id, title: c.title, area: caseArea(c.id), durationMs: 0 }
  if (input.blocked) return { ...base, status: input.blocked.status, reason: input.blocked.reason }
  const skip = c.skipReason?.(input.capabilities)
  if (skip !== undefined) return { ...base, status: 'skip', reason: skip }
  return executeCase(input.target, c, input.capabilities, input.timeoutMs ?? CASE_TIMEOUT_MS)
}

/** A case that failed or met a target error, thrown by {@link runCase}: its message lists every failure. */
export class CaseFailedError extends Error {
  readonly result: CaseResult
  constructor(result: CaseResult) {
    super(
      `${result.id}: ${result.status === 'error' ? `${result.reason}\n` : ''}${result.error ?? `${result.status}${result.reason ? ` (${result.reason})` : ''}`}`,
    )
    this.name = 'CaseFailedError'
    this.result = result
  }
}

/**
 * Runs one case (whatever its skip reason) on fresh fixtures, disposes them, and throws a
 * {@link CaseFailedError} listing every failure when it did not pass.
 */
export const runCase = async (
  target: ConformanceTarget,
  c: ConformanceCase,
  capabilities: Capabilities,
  options: { readonly timeoutMs?: number } = {},
): Promise<void> => {
  const result = await executeCase(target, c, capabilities, options.timeoutMs ?? CASE_TIMEOUT_MS)
  if (result.status !== 'pass') throw new CaseFailedError(result)
}

/**
 * Connects the target and reads its capabilities; a `setup()` that throws or a malformed
 * declaration is a target error, never a certificate.
 */
export const prepareTarget = async (
  target: ConformanceTarget,
  server: ServerConnection | undefined,
): Promise<{
  info: TargetInfo | undefined
  capabilities: Capabilities
  targetError?: TargetError
  /** What `setup()` threw, for a caller that rethrows it as a cause. */
  thrown?: unknown
}> => {
  let info: TargetInfo | undefined
  try {
    info = await target.setup?.(server)
  } catch (error) {
    const failure = describeFailure(error, 'error')
    const where = server ? ` (server ${server.engine} from ${server.source})` : ''
    return {
      info: undefined,
      capabilities: target.capabilities,
      targetError: {
        stage: 'setup',
        message: `setup() failed${where}: ${failure.name}: ${failure.message}`,
        failure,
      },
      thrown: error,
    }
  }
  const capabilities = info?.capabilities ?? target.capabilities
  const problems = capabilityProblems(capabilities)
  if (problems.length > 0)
    return { info, capabilities, targetError: { stage: 'capabilities', message: problems.join('; ') } }
  return { info, capabilities }
}

/** The block every case meets after a target error. */
export const targetErrorBlock = (targetError: TargetError): CaseBlock => ({
  status: 'error',
  reason: `target error: ${targetError.message}`,
})

/** Options of {@link runConformance}. */
export interface RunOptions {
  /** Only the cases whose id contains this text (or matches this `*` glob). */
  readonly only?: string
  /** The server to use, when the target needs one. */
  readonly server?: ServerConnection
  /** Why the target cannot run (its server was not found): every case is reported `not-run`. */
  readonly notRunReason?: string
  /** Capability areas that must be certified, e.g. `['transactions']`; else the report is not ok. */
  readonly require?: readonly string[]
  /** How long one case may take, in ms (default {@link CASE_TIMEOUT_MS}). */
  readonly caseTimeoutMs?: number
  /** Called after each case, e.g. to print progress. */
  readonly onResult?: (result: CaseResult) => void
}

/** Certifies a target outside any test framework: runs the cases and returns the report. */
export const runConformance = async (
  target: ConformanceTarget,
  options: RunOptions = {},
): Promise<ConformanceReport> => {
  const timeoutMs = checkCaseTimeout(options.caseTimeoutMs)
  const required = checkRequiredAreas(options.require)
  const started = performance.now()
  const startedAt = new Date().toISOString()
  const cases = selectCases(options.only)
  const results: CaseResult[] = []
  let info: TargetInfo | undefined
  let capabilities = target.capabilities
  let targetError: TargetError | undefined
  let blocked: CaseBlock | undefined =
    options.notRunReason !== undefined ? { status: 'not-run', reason: options.notRunReason } : undefined
  try {
    if (blocked === undefined) {
      ;({ info, capabilities, targetError } = await prepareTarget(target, options.server))
      if (targetError) blocked = targetErrorBlock(targetError)
    }
    for (const c of cases) {
      const result = await certifyCase({ target, case: c, capabilities, timeoutMs, blocked })
      results.push(result)
      options.onResult?.(result)
    }
  } finally {
    // Setup was attempted (it may have opened connections even if it then failed).
    if (options.notRunReason === undefined) await target.teardown?.()
  }
  return buildReport({
    target,
    info,
    capabilities,
    server: options.server,
    startedAt,
    started,
    results,
    required,
    targetError,
  })
}

/** Assembles the report from results (shared with the vitest binding). */
export const buildReport = (input: {
  target: ConformanceTarget
  info: TargetInfo | undefined
  capabilities: Capabilities
  server: ServerConnection | undefined
  startedAt: string
  started: number
  results: readonly CaseResult[]
  required?: readonly string[] | undefined
  targetError?: TargetError | undefined
}): ConformanceReport => {
  const summary = summarize(input.results)
  const required = input.required ?? []
  const verdict = buildVerdict({
    results: input.results,
    capabilities: input.capabilities,
    required,
    problem: input.targetError
      ? `target error: ${input.targetError.message}`
      : summary.notRun > 0
        ? 'target not reached'
        : undefined,
  })
  return {
    suite: { name: '@txbox/conformance', version: SUITE_VERSION },
    adapter: { name: input.target.name, ...(input.target.version ? { version: input.target.version } : {}) },
    engine: {
      name: input.target.engine ?? 'embedded',
      ...(input.info?.serverVersion ? { serverVersion: input.info.serverVersion } : {}),
      ...(input.server ? { connection: input.server.source } : {}),
      ...(input.server?.image ? { image: input.server.image } : {}),
    },
    capabilities: input.capabilities,
    required,
    startedAt: input.startedAt,
    durationMs: performance.now() - input.started,
    ...(input.targetError ? { targetError: input.targetError } : {}),
    cases: input.results,
    summary,
    verdict,
    ok: verdict.certified,
  }
}
