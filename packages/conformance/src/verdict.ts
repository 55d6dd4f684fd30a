import { type Capabilities, DEFAULT_MAX_EVENT_BYTES } from '@txbox/core'
import { capabilityProblems } from './declared-capabilities.js'
import type { CaseResult } from './report.js'

/**
 * What a certificate covers, area by area: the one table that maps each case (by the prefix
 * of its id) to the capability it certifies. A target that declares fewer capabilities gets
 * the matching cases skipped, and its verdict names what it is not certified for.
 */
export interface CapabilityArea {
  readonly area: string
  /** What a certificate for this area promises. */
  readonly means: string
  /** Case ids starting with one of these belong to the area (the longest prefix wins). */
  readonly prefixes: readonly string[]
  /** The declared capability the certificate is scoped to, e.g. `single-writer`. */
  readonly scope?: (capabilities: Capabilities) => string
}

export const CAPABILITY_AREAS: readonly CapabilityArea[] = Object.freeze([
  {
    area: 'outbox',
    means:
      'enqueue, first write wins, FIFO order, retries and dead letters, cleanup, counts, input validation, payload fidelity',
    prefixes: ['outbox.'],
  },
  {
    area: 'inbox',
    means:
      'dedupe by event id and by JetStream (stream, streamSeq), processing states, cleanup, counts, validation',
    prefixes: ['inbox.'],
  },
  {
    area: 'claim',
    means:
      'concurrent claims are disjoint, leases expire and are fenced, renewals, redelivery of expired claims',
    prefixes: ['outbox.claim.', 'inbox.claim.'],
    scope: (capabilities) =>
      capabilities.claim === 'single-writer'
        ? 'single-writer: the database serializes every writer, so claims are disjoint only within that'
        : capabilities.claim,
  },
  {
    area: 'transactions',
    means: "enqueue and inbox writes inside the caller's transaction: visible on commit, gone on rollback",
    prefixes: ['outbox.tx.', 'inbox.tx.'],
    scope: (capabilities) => capabilities.transactions,
  },
  {
    area: 'payload-limit',
    means: 'an event over maxEventBytes is refused with PayloadTooLargeError before any write',
    prefixes: ['outbox.payload.too-large'],
    scope: (capabilities) =>
      capabilities.maxEventBytes === undefined
        ? `${DEFAULT_MAX_EVENT_BYTES} bytes, the contract's default: the target declares no maxEventBytes`
        : `${capabilities.maxEventBytes} bytes`,
  },
  {
    area: 'ordering',
    means:
      'ordering keys: keySeq strictly increasing per key in commit order and never reused, only the first unsent event of a key is claimable (across connections, through retries, expired leases and dead letters), keyedDeadLetters honoured',
    prefixes: ['outbox.ordering.'],
  },
  {
    area: 'key-runs',
    means:
      "key runs: a claim's keyRun hands one claimer a key's head and its next claimable events in keySeq order under one lease, stopping at the first event that is not claimable, counted in the limit; release is fenced and keeps retryCount; an expired run is claimed again from its lowest unsent event",
    prefixes: ['outbox.key-runs.'],
  },
  {
    area: 'schema',
    means: 'migrations are idempotent and safe to run concurrently; namespaces are isolated',
    prefixes: ['schema.', 'isolation.'],
  },
  {
    area: 'driver-errors',
    means:
      "a failure in the database driver surfaces as StorageError with the driver's error as cause, on every method",
    prefixes: ['outbox.errors.', 'inbox.errors.'],
  },
])

/**
 * The area a case certifies. A case whose id matches no prefix (a new family of cases) is
 * its own area, named by the id's first segment, so it is never left out of the verdict.
 */
export const caseArea = (caseId: string): string => {
  let best: { area: string; length: number } | undefined
  for (const { area, prefixes } of CAPABILITY_AREAS)
    for (const prefix of prefixes)
      if (caseId.startsWith(prefix) && prefix.length > (best?.length ?? -1))
        best = { area, length: prefix.length }
  return best?.area ?? caseId.split('.')[0] ?? caseId
}

/** One area's line of the verdict. */
export interface AreaVerdict {
  readonly area: string
  /** `certified`: every case ran and passed; `not-certified`: some were skipped or not run; `failed`: one failed or met a target error. */
  readonly status: 'certified' | 'not-certified' | 'failed'
  /** The declared capability the certificate is scoped to. */
  readonly scope?: string
  readonly cases: readonly string[]
  /** Why it is not certified: the skip reasons, or the failed case ids. */
  readonly reasons?: readonly string[]
}

/** The verdict of a run, in the report and on the table's last line. */
export interface Verdict {
  readonly certified: boolean
  readonly areas: readonly AreaVerdict[]
  /** `--require`d areas that are not certified: they fail the run. */
  readonly missingRequired: readonly string[]
  /** One line, e.g. `CERTIFIED for: outbox, inbox, claim (skip-locked); NOT certified: transactions (skipped: ...)`. */
  readonly text: string
}

/** The names `--require` accepts. */
export const areaNames = (): string[] => CAPABILITY_AREAS.map(({ area }) => area)

const unique = (items: readonly string[]): string[] => [...new Set(items)]

/** Judges each area of the run from its case results. */
export const judgeAreas = (results: readonly CaseResult[], capabilities: Capabilities): AreaVerdict[] => {
  const byArea = new Map<string, CaseResult[]>()
  for (const result of results) {
    const area = caseArea(result.id)
    byArea.set(area, [...(byArea.get(area) ?? []), result])
  }
  // A malformed declaration scopes nothing (it is reported as a target error).
  const wellFormed = capabilityProblems(capabilities).length === 0
  const order = [...areaNames(), ...[...byArea.keys()].filter((area) => !areaNames().includes(area))]
  return order.flatMap((area): AreaVerdict[] => {
    const cases = byArea.get(area)
    if (!cases) return []
    const definition = CAPABILITY_AREAS.find((entry) => entry.area === area)
    const scope = wellFormed ? definition?.scope?.(capabilities) : undefined
    const failed = cases.filter((result) => result.status === 'fail' || result.status === 'error')
    const missed = cases.filter((result) => result.status === 'skip' || result.status === 'not-run')
    const common = {
      area,
      ...(scope !== undefined ? { scope } : {}),
      cases: cases.map((result) => result.id),
    }
    if (failed.length > 0)
      return [
        {
          ...common,
          status: 'failed',
          reasons: failed.map(
            (result) => `${result.id} ${result.status === 'error' ? 'met a target error' : 'failed'}`,
          ),
        },
      ]
    if (missed.length > 0)
      return [
        {
          ...common,
          status: 'not-certified',
          reasons: unique(
            missed.map(
              (result) =>
                `${result.status === 'skip' ? 'skipped' : 'not run'}: ${result.reason ?? 'no reason given'}`,
            ),
          ),
        },
      ]
    return [{ ...common, status: 'certified' }]
  })
}

const named = (verdict: AreaVerdict): string =>
  verdict.scope !== undefined ? `${verdict.area} (${verdict.scope})` : verdict.area

/**
 * The run's verdict. `problem` is what makes the whole run uncertifiable (a target error,
 * a server that was not reached), said before the areas.
 */
export const buildVerdict = (input: {
  readonly results: readonly CaseResult[]
  readonly capabilities: Capabilities
  readonly required: readonly string[]
  readonly problem?: string | undefined
}): Verdict => {
  const areas = judgeAreas(input.results, input.capabilities)
  const certifiedAreas = areas.filter((area) => area.status === 'certified')
  const missingRequired = input.required.filter(
    (area) => !certifiedAreas.some((entry) => entry.area === area),
  )
  const failedAreas = areas.filter((area) => area.status === 'failed')
  const certified =
    input.problem === undefined &&
    failedAreas.length === 0 &&
    certifiedAreas.length > 0 &&
    missingRequired.length === 0 &&
    !input.results.some((result) => result.status === 'not-run')
  if (input.problem !== undefined)
    return { certified, areas, missingRequired, text: `NOT CERTIFIED (${input.problem})` }
  const scope = (lead: string) =>
    [
      ...(certifiedAreas.length > 0 ? [`${lead} for: ${certifiedAreas.map(named).join(', ')}`] : []),
      ...areas
        .filter((area) => area.status !== 'certified')
        .map(
          (area) =>
            `${area.status === 'failed' ? 'FAILED' : 'NOT certified'}: ${area.area} (${(area.reasons ?? []).join('; ')})`,
        ),
    ].join('; ')
  if (certified) return { certified, areas, missingRequired, text: scope('CERTIFIED') }
  const why = [
    ...(failedAreas.length > 0 ? [`failed: ${failedAreas.map((area) => area.area).join(', ')}`] : []),
    ...(missingRequired.length > 0 ? [`required but not certified: ${missingRequired.join(', ')}`] : []),
    ...(areas.length === 0 ? ['no case ran'] : []),
  ]
  const details = scope('certified')
  return {
    certified,
    areas,
    missingRequired,
    text: `NOT CERTIFIED (${why.join('; ')})${details ? `; ${details}` : ''}`,
  }
}
