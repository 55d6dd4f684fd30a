export { boundedChunks, repeatInBatches } from './batches.js'
export { type Capabilities, defineCapabilities } from './capabilities.js'
export { addMs, type Clock, cutoffDays, cutoffMinutes, ManualClock, systemClock } from './clock.js'
export { inboxCounts, outboxCounts } from './counts.js'
export { describeHandle } from './describe-handle.js'
export {
  EventNotFoundError,
  errorPrefix,
  LeaseLostError,
  PayloadTooLargeError,
  StorageError,
  TxboxError,
  type TxboxErrorCode,
  ValidationError,
} from './errors.js'
export {
  INBOX_STATUSES,
  type InboxClaimOptions,
  type InboxClaimResult,
  type InboxCounts,
  type InboxEvent,
  type InboxFenceOptions,
  type InboxParams,
  type InboxProcessedOptions,
  type InboxRepository,
  type InboxStatus,
  PROCESSING_TIMEOUT_MESSAGE,
} from './inbox.js'
export {
  type InboxHandler,
  type InboxHandlerContext,
  type InboxMessage,
  InboxProcessor,
  type InboxProcessorCommonOptions,
  type InboxProcessorCounters,
  type InboxProcessorMetrics,
  type InboxProcessorOptions,
  type InboxProcessorStore,
  type InboxSource,
  type InboxSubscription,
  inboxEventId,
  type MaybeTransactionalInboxProcessorOptions,
  type NonTransactionalInboxProcessorOptions,
  type PlainInboxProcessorOptions,
  type StoreTransactionInboxProcessorOptions,
  type TransactionalInboxProcessorOptions,
  type TransactionalInboxProcessorStore,
  type TransactionRunner,
} from './inbox-processor/index.js'
export {
  type JsonPayload,
  type JsonPayloadOptions,
  jsonPayload,
  type StoredPayload,
} from './json-payload.js'
export { InboxRepositoryKernel, type InboxRepositorySettings } from './kernel/inbox-kernel.js'
export { OutboxRepositoryKernel } from './kernel/outbox-kernel.js'
export {
  type ClaimRequest,
  type FencedOutcome,
  type InboxClaimRequest,
  type NewOutboxEventParams,
  type OutboxChange,
  type RepositorySettings,
  type RequeueOutcome,
  type StatusCountRows,
  SWEEP_BATCH,
} from './kernel/primitives.js'
export {
  type ClassifyStorageError,
  classifyUnknown,
  runStorageOperation,
  STORAGE_ERROR_REASONS,
  type StorageErrorReason,
  type StorageFailure,
} from './kernel/storage-failure.js'
export {
  createJsonLogger,
  type FieldsFirstLogger,
  type JsonLoggerOptions,
  LOG_LEVELS,
  type LoggerOption,
  type LogLevel,
  resolveLogger,
  silentLogger,
  type TxboxLogger,
} from './logger.js'
export { MemoryInboxRepository } from './memory/memory-inbox-repository.js'
export { type MemoryOutboxOptions, MemoryOutboxRepository } from './memory/memory-outbox-repository.js'
export {
  createMemoryStore,
  type MemoryStore,
  type MemoryStoreOptions,
  memoryCapabilities,
} from './memory/memory-store.js'
export { MemoryTransaction } from './memory/memory-transaction.js'
export { memoryTransactionDriver } from './memory/memory-transaction-driver.js'
export {
  applyMigrations,
  applyMigrationsSync,
  loadMigrations,
  MIGRATION_FILE_NAME,
  type Migration,
  type MigrationHistory,
  renderMigration,
  type SyncMigrationHistory,
  versionsThrough,
} from './migrations.js'
export {
  buildMigrationScripts,
  checkMigrationScriptOptions,
  formatMigrationScript,
  formatMigrationScripts,
  MIGRATION_RANGE_OPTIONS,
  type MigrationDirection,
  type MigrationScript,
  type MigrationScriptDialect,
  type MigrationScriptFormat,
  type MigrationScriptRange,
  noMigrationScripts,
  splitStatements,
} from './migrations-scripts.js'
export {
  assertEventFits,
  DEFAULT_MAX_EVENT_BYTES,
  KEY_SEQ,
  natsMessageBytes,
  ORDERING_KEY,
  resolveMaxEventBytes,
} from './nats-message.js'
export { newInboxEvent, newOutboxEvent } from './new-event.js'
export {
  type ClaimOptions,
  type EnqueueParams,
  type FenceOptions,
  type KeyedDeadLetters,
  OUTBOX_STATUSES,
  type OutboxCounts,
  type OutboxEvent,
  type OutboxRepository,
  type OutboxStatus,
  type RenewLeaseOptions,
  type RetryLaterOptions,
  type WriteOptions,
} from './outbox.js'
export {
  type BackoffOptions,
  backoffDelayMs,
  createPrometheusExporter,
  DEFAULT_BACKOFF,
  DEFAULT_MAX_BATCH_BYTES,
  type DuplicateCheck,
  errorFields,
  type HealthReport,
  type HistogramSnapshot,
  LATENCY_BUCKETS_MS,
  type MappedSubject,
  type MetricsSource,
  messageOf,
  type OutboxPublisher,
  OutboxRelay,
  type OutboxRelayOptions,
  type PrometheusExporter,
  type PrometheusOptions,
  type PromRegistry,
  type PublishErrorFields,
  type PublishReceipt,
  type RelayCounters,
  type RelayMetrics,
  type RelayWakeup,
  type ResolvedBackoff,
  type RetentionOptions,
  realSleep,
  resolveBackoff,
  type Sleep,
  SubjectMap,
  type SubjectMapEntry,
  type SubjectMapFunction,
  type SubjectMapOption,
  subjectPatternCovers,
  subjectPatternProblem,
} from './relay/index.js'
export type { TxboxStore } from './store.js'
export {
  type ConnectOptions,
  checkUrlScheme,
  DEFAULT_CONNECT_TIMEOUT_MS,
  type StoreConnection,
  type StoreConnectionParts,
  storeConnection,
} from './store-connection.js'
export {
  STORE_KINDS,
  STORE_REGISTRY,
  type StoreKind,
  type StoreRegistration,
  storeRegistration,
} from './store-registry.js'
export { type OpenTelemetryMode, setOpenTelemetryMode } from './telemetry/mode.js'
export { openTelemetryReady } from './telemetry/ready.js'
export { decodeStoredText, encodeStoredText, utf8Bytes } from './text-codec.js'
export {
  AmbientTransactions,
  type AmbientTransactionsSettings,
  runOnDriver,
  type TransactionAttempt,
  type TransactionalStore,
  type TransactionDriver,
  type TransactionFunction,
  type TransactionOptions,
} from './transactions/index.js'
export {
  DEFAULT_LIMIT,
  MAX_EVENT_ID_LENGTH,
  MAX_LEASE_MS,
  MAX_LIMIT,
  MAX_NAME_LENGTH,
  MAX_SUBJECT_LENGTH,
  MAX_TIMER_MS,
  Validator,
} from './validation.js'
