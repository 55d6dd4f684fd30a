export {
  InboxProcessor,
  type InboxProcessorCommonOptions,
  type InboxProcessorCounters,
  type InboxProcessorMetrics,
  type InboxProcessorOptions,
  type InboxProcessorStore,
  inboxEventId,
  type MaybeTransactionalInboxProcessorOptions,
  type NonTransactionalInboxProcessorOptions,
  type PlainInboxProcessorOptions,
  type StoreTransactionInboxProcessorOptions,
  type TransactionalInboxProcessorOptions,
  type TransactionalInboxProcessorStore,
} from './inbox-processor.js'
export type {
  InboxHandler,
  InboxHandlerContext,
  InboxMessage,
  InboxSource,
  InboxSubscription,
  TransactionRunner,
} from './types.js'
