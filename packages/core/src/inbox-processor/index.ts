export {
  InboxProcessor,
  type InboxProcessorCounters,
  type InboxProcessorMetrics,
  type InboxProcessorOptions,
  inboxEventId,
} from './inbox-processor.js'
export type {
  InboxHandler,
  InboxHandlerContext,
  InboxMessage,
  InboxSource,
  InboxSubscription,
  TransactionRunner,
} from './types.js'
