import type { Capabilities } from '@txbox/core'

const TRANSACTIONS: readonly Capabilities['transactions'][] = ['native', 'multi', 'collector', 'none']
const CLAIM: readonly Capabilities['claim'][] = [
  'skip-locked',
  'atomic-script',
  'conditional-update',
  'single-writer',
]

const shown = (value: unknown): string =>
  value === undefined ? 'nothing' : (JSON.stringify(value) ?? String(value))

/**
 * What is wrong with a target's declared capabilities, one sentence each; empty when they
 * are well formed. They choose which cases run, so a declaration the suite cannot read
 * would certify by accident: the run reports it as a target error instead.
 */
export const capabilityProblems = (declared: unknown): string[] => {
  if (typeof declared !== 'object' || declared === null || Array.isArray(declared))
    return [
      `capabilities must be an object such as { transactions: 'native', claim: 'skip-locked', maxEventBytes: 1048576 }, got ${shown(declared)}`,
    ]
  const { transactions, claim, maxEventBytes, orderingKeys, keyRuns, transactionsNote } = declared as Record<
    string,
    unknown
  >
  const problems: string[] = []
  if (!TRANSACTIONS.includes(transactions as Capabilities['transactions']))
    problems.push(
      `capabilities.transactions must be one of ${TRANSACTIONS.map((v) => `'${v}'`).join(', ')}, got ${shown(transactions)}`,
    )
  if (!CLAIM.includes(claim as Capabilities['claim']))
    problems.push(
      `capabilities.claim must be one of ${CLAIM.map((v) => `'${v}'`).join(', ')}, got ${shown(claim)}`,
    )
  if (maxEventBytes !== undefined && !(Number.isSafeInteger(maxEventBytes) && (maxEventBytes as number) > 0))
    problems.push(
      `capabilities.maxEventBytes must be a positive integer (bytes) or absent, got ${shown(maxEventBytes)}`,
    )
  if (orderingKeys !== undefined && typeof orderingKeys !== 'boolean')
    problems.push(`capabilities.orderingKeys must be true, false or absent, got ${shown(orderingKeys)}`)
  if (keyRuns !== undefined && typeof keyRuns !== 'boolean')
    problems.push(`capabilities.keyRuns must be true, false or absent, got ${shown(keyRuns)}`)
  if (keyRuns === true && orderingKeys !== true)
    problems.push('capabilities.keyRuns is true but orderingKeys is not: key runs are runs of ordering keys')
  if (transactionsNote !== undefined && typeof transactionsNote !== 'string')
    problems.push(`capabilities.transactionsNote must be a string or absent, got ${shown(transactionsNote)}`)
  return problems
}
