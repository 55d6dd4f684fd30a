export {
  InboxProcessor,
  type InboxProcessorCommonOptions,
  type InboxProcessorCounters,
  type InboxProcessorMetrics,
  type InboxProcessorOptions,
  inboxEventId,
  type MaybeTransactionalInboxProcessorOptions,
  type PlainInboxProcessorOptions,
  type TransactionalInboxProcessorOptions,
} from './inbox-processor.js'
export type {
  InboxHandler,
  InboxHandlerContext,
  InboxMessage,
  InboxSource,
  InboxSubscription,
  TransactionRunner,
} from './types.js'
