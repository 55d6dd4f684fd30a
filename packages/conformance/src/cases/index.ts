import type { ConformanceCase } from '../case.js'
import { absentFieldCases } from './absent-fields.js'
import { concurrencyCases } from './concurrency.js'
import { inboxCases } from './inbox.js'
import { outboxClaimCases } from './outbox-claim.js'
import { outboxIdempotencyCases } from './outbox-idempotency.js'
import { outboxKeyRunCases } from './outbox-key-runs.js'
import { outboxMaintenanceCases } from './outbox-maintenance.js'
import { outboxOrderCases } from './outbox-order.js'
import { outboxOrderingCases } from './outbox-ordering.js'
import { outboxRetryCases } from './outbox-retry.js'
import { outboxTransactionCases } from './outbox-transactions.js'
import { pagingCases } from './paging.js'
import { payloadCases } from './payload.js'
import { ruleCases } from './rules.js'
import { ruleCases2 } from './rules-2.js'
import { ruleCases3 } from './rules-3.js'
import { schemaCases } from './schema.js'
import { transactionHandleCases } from './transaction-handles.js'
import { validationCases } from './validation.js'

/** Every case of the suite, in report order. Ids are stable (docs/CONTRACT.md §6). */
export const conformanceCases: readonly ConformanceCase[] = Object.freeze([
  ...outboxIdempotencyCases,
  ...outboxOrderCases,
  ...outboxClaimCases,
  ...outboxRetryCases,
  ...outboxMaintenanceCases,
  ...outboxTransactionCases,
  ...transactionHandleCases,
  ...validationCases,
  ...ruleCases,
  ...ruleCases2,
  ...ruleCases3,
  ...payloadCases,
  ...outboxOrderingCases,
  ...outboxKeyRunCases,
  ...absentFieldCases,
  ...inboxCases,
  ...concurrencyCases,
  ...pagingCases,
  ...schemaCases,
])
